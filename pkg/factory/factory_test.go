package factory

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/vc"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// fakeFactory writes a factory directory as InitFactory would, for a VM
// of h, without booting anything: its files are stand-ins.
func fakeFactory(t testing.TB) (string, vc.SandboxConfig) {
	t.Helper()
	base := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(base, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := vc.HypervisorConfig{
		Path:   write("qemu", "#!/bin/true\n", 0o755),
		Kernel: write("vmlinuz", "kernel-1", 0o644),
		Initrd: write("initrd", "initrd-1", 0o644),
	}
	dir := filepath.Join(base, "factory")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, factoryMemoryName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, factoryMemoryName), hypervisor.DefaultMemoryMiB<<20); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, factoryStateName)
	if err := os.WriteFile(state, []byte("QEVM device state"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := Manifest{Version: factoryVersion, Created: time.Now(), CPUs: 1, MemoryMiB: hypervisor.DefaultMemoryMiB, Accel: "tcg", NAT: true}
	var err error
	for _, s := range []struct {
		dst  *FileStamp
		path string
	}{{&m.QEMU, h.Path}, {&m.Kernel, h.Kernel}, {&m.Initrd, h.Initrd}, {&m.State, state}} {
		if *s.dst, err = stampFile(s.path); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, factoryManifestName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, vc.SandboxConfig{ID: "s", Hypervisor: h}
}

func TestFactoryOpen(t *testing.T) {
	if _, err := Open(t.TempDir()); !errdefs.IsNotFound(err) {
		t.Fatalf("empty dir: %v", err)
	}
	dir, cfg := fakeFactory(t)
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Fits(cfg); err != nil {
		t.Fatalf("the template's own config: %v", err)
	}
	hc := hypervisor.Config{ID: "s", StateDir: "/run/vc/s/vm", Accel: "auto"}
	f.restoreConfig(&hc)
	if hc.MemoryFile != filepath.Join(dir, "memory") || hc.MemoryShared || hc.RestoreState != filepath.Join(dir, "state") || hc.Accel != "tcg" {
		t.Errorf("restore config %+v", hc)
	}

	invalid := func(what, want string) {
		t.Helper()
		_, err := Open(dir)
		if !errors.Is(err, ErrTemplateInvalid) || !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want ErrTemplateInvalid naming %q", what, err, want)
		}
	}
	// A touched kernel with the same content is still the template's.
	later := time.Now().Add(time.Hour)
	os.Chtimes(cfg.Hypervisor.Kernel, later, later)
	if _, err := Open(dir); err != nil {
		t.Errorf("touched kernel: %v", err)
	}
	os.WriteFile(cfg.Hypervisor.Kernel, []byte("kernel-2"), 0o644)
	invalid("changed kernel", "kernel: ")
	os.WriteFile(cfg.Hypervisor.Kernel, []byte("kernel-1"), 0o644)

	state := filepath.Join(dir, "state")
	os.WriteFile(state, []byte("QEVM"), 0o600)
	invalid("truncated state", "state file")
	os.WriteFile(state, []byte("QEVM device statX"), 0o600)
	invalid("altered state", "state file")
	os.WriteFile(state, []byte("QEVM device state"), 0o600)

	mem := filepath.Join(dir, "memory")
	os.Truncate(mem, 1<<20)
	invalid("short memory file", "memory file")
	os.Remove(mem)
	invalid("no memory file", "memory file")
	os.WriteFile(mem, nil, 0o600)
	os.Truncate(mem, hypervisor.DefaultMemoryMiB<<20)

	mpath := filepath.Join(dir, "manifest.json")
	b, _ := os.ReadFile(mpath)
	os.WriteFile(mpath, b[:len(b)/2], 0o600)
	invalid("truncated manifest", "manifest")
	os.WriteFile(mpath, b, 0o600)
	if _, err := Open(dir); err != nil {
		t.Fatalf("restored: %v", err)
	}
}

func TestFactoryFits(t *testing.T) {
	dir, cfg := fakeFactory(t)
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The same kernel under another name fits (by content).
	other := filepath.Join(t.TempDir(), "vmlinuz-copy")
	os.WriteFile(other, []byte("kernel-1"), 0o644)
	c := cfg
	c.Hypervisor.Kernel = other
	if err := f.Fits(c); err != nil {
		t.Errorf("a copy of the kernel: %v", err)
	}
	otherInitrd := filepath.Join(t.TempDir(), "initrd-2")
	os.WriteFile(otherInitrd, []byte("initrd-2"), 0o644)
	for _, tc := range []struct {
		name  string
		edit  func(*vc.SandboxConfig)
		field string
	}{
		{"memory", func(c *vc.SandboxConfig) { c.Hypervisor.MemoryMiB = 512 }, "hypervisor.memory_mib"},
		{"cpus", func(c *vc.SandboxConfig) { c.Hypervisor.CPUs = 2 }, "hypervisor.cpus"},
		{"debug", func(c *vc.SandboxConfig) { c.Hypervisor.Debug = true }, "hypervisor.kernel_params"},
		{"params", func(c *vc.SandboxConfig) { c.Hypervisor.KernelParams = []string{"x=1"} }, "hypervisor.kernel_params"},
		{"accel", func(c *vc.SandboxConfig) { c.Hypervisor.Accel = "kvm" }, "hypervisor.accel"},
		{"netns", func(c *vc.SandboxConfig) { c.NetNS = "/var/run/netns/x" }, "network"},
		{"no network", func(c *vc.SandboxConfig) { c.NAT.Disabled = true }, "network"},
		{"initrd", func(c *vc.SandboxConfig) { c.Hypervisor.Initrd = otherInitrd }, "hypervisor.initrd"},
	} {
		c := cfg
		tc.edit(&c)
		err := f.Fits(c)
		if !errors.Is(err, ErrTemplateMismatch) || !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: %v, want ErrTemplateMismatch naming %s", tc.name, err, tc.field)
		}
	}
	c = cfg
	c.Hypervisor.Accel = "auto"
	if err := f.Fits(c); err != nil {
		t.Errorf("accel auto: %v", err)
	}
	c = cfg
	c.Hypervisor.Factory = "factory"
	if err := c.Hypervisor.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "hypervisor.factory") {
		t.Errorf("relative factory dir: %v", err)
	}
	c = cfg
	if err := Use(&c, dir); err != nil || c.Hypervisor.Factory != dir || c.VMSource == nil {
		t.Errorf("Use: %v, factory %q, source %v", err, c.Hypervisor.Factory, c.VMSource)
	}
	c = cfg
	c.Hypervisor.MemoryMiB = 512
	if err := Use(&c, dir); !errors.Is(err, ErrTemplateMismatch) || c.Hypervisor.Factory != "" || c.VMSource != nil {
		t.Errorf("Use of another size: %v, factory %q", err, c.Hypervisor.Factory)
	}
	if err := Use(&c, t.TempDir()); !errdefs.IsNotFound(err) {
		t.Errorf("UseFactory without a template: %v", err)
	}
	// A template without the NAT NIC serves namespaces and no network.
	f.manifest.NAT = false
	c = cfg
	c.NetNS = "/var/run/netns/x"
	if err := f.Fits(c); err != nil {
		t.Errorf("netns on a template without NAT: %v", err)
	}
	c.NetNS, c.NAT.Disabled = "", true
	if err := f.Fits(c); err != nil {
		t.Errorf("no network on a template without NAT: %v", err)
	}
	if err := f.Fits(cfg); !errors.Is(err, ErrTemplateMismatch) || !strings.Contains(err.Error(), "no NAT NIC") {
		t.Errorf("NAT sandbox on a template without NAT: %v", err)
	}
}

func TestFactoryDestroy(t *testing.T) {
	dir, _ := fakeFactory(t)
	stale := dir + ".new-123"
	os.MkdirAll(filepath.Join(stale, "vm"), 0o700)
	os.WriteFile(filepath.Join(stale, "vm", "qemu.pid"), []byte("1\n"), 0o600) // not a template's qemu: left alone
	if err := Destroy(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, stale} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if _, err := Inspect(dir); !errdefs.IsNotFound(err) {
		t.Errorf("status after destroy: %v", err)
	}
}

// A factory as a sandbox's VM source checks the template when the
// sandbox starts, before anything runs: damaged since Use, or a sandbox
// with more NICs than the template has free slots, fails the start.
func TestTakeVMChecksFirst(t *testing.T) {
	ctx := context.Background()
	dir, cfg := fakeFactory(t)
	src := Source(dir)
	nics := make([]hypervisor.NIC, HotplugSlots+1)
	cfg.NAT.Disabled = true
	f, _ := Open(dir)
	f.manifest.NAT = false
	b, _ := json.Marshal(f.manifest)
	os.WriteFile(filepath.Join(dir, factoryManifestName), b, 0o600)
	_, ok, err := src.TakeVM(ctx, vc.VMSpec{Config: cfg, Dir: t.TempDir(), NICs: nics})
	if ok || !errors.Is(err, ErrTemplateMismatch) || !strings.Contains(err.Error(), "free slots") {
		t.Errorf("%d NICs: ok %v, %v", len(nics), ok, err)
	}
	os.WriteFile(filepath.Join(dir, factoryStateName), []byte("QEVM"), 0o600)
	_, ok, err = src.TakeVM(ctx, vc.VMSpec{Config: cfg, Dir: t.TempDir()})
	if ok || !errors.Is(err, ErrTemplateInvalid) || !strings.Contains(err.Error(), "state file") {
		t.Errorf("a template damaged since: ok %v, %v", ok, err)
	}
}
