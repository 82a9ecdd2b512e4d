package qemu

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// Tests of the driver that need no QEMU.

func unitConfig(t *testing.T) hypervisor.Config {
	t.Helper()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	return hypervisor.Config{
		ID:             "unit",
		StateDir:       filepath.Join(dir, "state"),
		Kernel:         kernel,
		HypervisorPath: "/bin/true",
		Accel:          hypervisor.AccelTCG,
		Logger:         testLogger(t),
	}
}

func TestNewRejectsLongStateDir(t *testing.T) {
	cfg := unitConfig(t)
	cfg.StateDir = "/run/vc/" + strings.Repeat("x", 100)
	if _, err := newVM(cfg); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("got %v", err)
	}
}

func TestRegisteredBackend(t *testing.T) {
	h, err := hypervisor.New(backendName, unitConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.(*qemuVM); !ok {
		t.Fatalf("backend %q made a %T", backendName, h)
	}
	if _, err := hypervisor.Attach(context.Background(), backendName, t.TempDir()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("attach to an empty dir: %v", err)
	}
}

func TestBeforeStart(t *testing.T) {
	ctx := context.Background()
	vm, err := newVM(unitConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := vm.State(ctx); err != nil || st != hypervisor.StateCreated {
		t.Errorf("state %s %v", st, err)
	}
	if vm.Pid() != 0 || vm.AgentAddress() != "" || vm.ExitError() != nil {
		t.Errorf("pid %d agent %q exit %v", vm.Pid(), vm.AgentAddress(), vm.ExitError())
	}
	if err := vm.Pause(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("pause: %v", err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:07")
	d := hypervisor.Disk{ID: "d", Path: "/img"}
	if err := vm.AddDisk(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := vm.AddDisk(ctx, d); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("dup disk: %v", err)
	}
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "bad id"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad disk: %v", err)
	}
	if err := vm.AddNIC(ctx, hypervisor.NIC{ID: "d", TapName: "tap0", MAC: mac}); err != nil {
		t.Errorf("a nic may share a disk's id: %v", err)
	}
	if err := vm.AddFS(ctx, hypervisor.SharedFS{Tag: "t", HostPath: "/srv"}); err != nil {
		t.Fatal(err)
	}
	if err := vm.AddFS(ctx, hypervisor.SharedFS{Tag: "t", HostPath: "/srv2"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("dup fs: %v", err)
	}
	if err := vm.RemoveDisk(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("remove unknown disk: %v", err)
	}
	if err := vm.RemoveNIC(ctx, "d"); err != nil {
		t.Errorf("remove nic: %v", err)
	}
	if err := vm.RemoveNIC(ctx, "d"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("remove removed nic: %v", err)
	}
	if len(vm.cfg.Disks) != 1 || len(vm.cfg.NICs) != 0 || len(vm.cfg.SharedFS) != 1 {
		t.Errorf("config devices: %d disks %d nics %d fs", len(vm.cfg.Disks), len(vm.cfg.NICs), len(vm.cfg.SharedFS))
	}
	if caps := vm.Capabilities(); caps.FSHotplug || !caps.BlockHotplug || caps.Accel != hypervisor.AccelTCG || caps.AgentTransport != hypervisor.TransportAuto {
		t.Errorf("capabilities: %+v", caps)
	}
	if err := vm.Stop(ctx, 0); err != nil {
		t.Errorf("stop before start: %v", err)
	}
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "late", Path: "/img"}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("add after stop: %v", err)
	}
}

func TestPreparePlan(t *testing.T) {
	old := vhostVsockDevice
	t.Cleanup(func() { vhostVsockDevice = old })
	vhostVsockDevice = filepath.Join(t.TempDir(), "no-vhost-vsock")

	cfg := unitConfig(t)
	img := filepath.Join(t.TempDir(), "d.img")
	os.WriteFile(img, nil, 0o644)
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	mac, _ := net.ParseMAC("02:00:00:00:00:08")
	cfg.Disks = []hypervisor.Disk{{ID: "d", Path: img}}
	cfg.NICs = []hypervisor.NIC{{ID: "n", TapFiles: []*os.File{tap, tap}, MAC: mac}}
	cfg.HotplugSlots = 3
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, files, err := vm.prepare()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if plan.transport != hypervisor.TransportVirtioSerial {
		t.Errorf("auto transport without vhost-vsock: %s", plan.transport)
	}
	if got := strings.Join(plan.slots, ","); got != "disk/d,nic/n,,," {
		t.Errorf("slots %q", got)
	}
	// The tap descriptors are duplicates, numbered from 3 in the child.
	if len(files) != 2 || plan.tapFDs["n"][0] != 3 || plan.tapFDs["n"][1] != 4 {
		t.Fatalf("files %d, tap fds %v", len(files), plan.tapFDs)
	}
	if files[0].Fd() == tap.Fd() {
		t.Error("the caller's tap descriptor is handed over instead of a duplicate")
	}
	args := strings.Join(plan.commandLine(), " ")
	for _, want := range []string{"-netdev tap,id=netdev-n,fds=3:4,vhost=off", "mq=on,vectors=6", "bus=rp0,serial=d", "id=rp4,"} {
		if !strings.Contains(args, want) {
			t.Errorf("command line lacks %q: %s", want, args)
		}
	}

	// vsock demanded without the device.
	cfg2 := unitConfig(t)
	cfg2.AgentTransport = hypervisor.TransportVsock
	vm2, _ := newVM(cfg2)
	if _, _, err := vm2.prepare(); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "vsock") {
		t.Errorf("vsock without the device: %v", err)
	}
	// A device that is not vhost-vsock fails the CID allocation.
	vhostVsockDevice = img
	vm3, _ := newVM(unitConfig(t))
	if _, _, err := vm3.prepare(); err == nil || !strings.Contains(err.Error(), "set guest cid 3") {
		t.Errorf("auto transport on a fake vhost-vsock: %v", err)
	}
}

func TestPrepareChecksInputs(t *testing.T) {
	for name, mod := range map[string]func(*hypervisor.Config){
		"initrd":   func(c *hypervisor.Config) { c.Initrd = "/nonexistent/initrd" },
		"firmware": func(c *hypervisor.Config) { c.Firmware = "/nonexistent/qboot.rom" },
		"shared": func(c *hypervisor.Config) {
			c.SharedFS = []hypervisor.SharedFS{{Tag: "t", HostPath: "/nonexistent/dir"}}
		},
		"disk": func(c *hypervisor.Config) { c.Disks = []hypervisor.Disk{{ID: "d", Path: "/nonexistent/disk"}} },
		"qemu": func(c *hypervisor.Config) { c.HypervisorPath = "/nonexistent/qemu" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := unitConfig(t)
			mod(&cfg)
			vm, err := newVM(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = vm.Start(context.Background())
			if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "/nonexistent/") {
				t.Fatalf("got %v", err)
			}
			if vm.Pid() != 0 {
				t.Fatalf("pid %d after a failed start", vm.Pid())
			}
		})
	}
	cfg := unitConfig(t)
	cfg.SharedFS = []hypervisor.SharedFS{{Tag: "t", HostPath: cfg.Kernel}}
	vm, _ := newVM(cfg)
	if err := vm.Start(context.Background()); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("shared file instead of dir: %v", err)
	}
}

func TestTailFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := 0; i < 100; i++ {
		b.WriteString("line ")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString("\r\n")
	}
	b.WriteString("last\n")
	os.WriteFile(p, []byte(b.String()), 0o644)
	got := tailFile(p, 3, 1000)
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || lines[2] != "last" || strings.Contains(got, "\r") {
		t.Fatalf("got %q", got)
	}
	// A small byte budget drops the partial first line.
	got = tailFile(p, 50, 20)
	if strings.HasPrefix(got, "x") || !strings.HasSuffix(got, "last") {
		t.Fatalf("got %q", got)
	}
	if tailFile(filepath.Join(t.TempDir(), "none"), 3, 100) != "" {
		t.Fatal("tail of a missing file")
	}
}
