package vc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/testenv"

	// The QEMU driver, registered for the VMs these tests start (a
	// program links the drivers it runs: pkg/vc names none).
	_ "github.com/virtcontainers/vc/pkg/hypervisor/qemu"
)

// pkg/vc names no hypervisor driver: a second backend registers itself
// without touching it. Its imports (not its tests') reach none of
// pkg/hypervisor's sub-packages, and no factory.
func TestNoDriverImported(t *testing.T) {
	testenv.NoImports(t, func(d string) bool {
		return strings.HasPrefix(d, "github.com/virtcontainers/vc/pkg/hypervisor/") || d == "github.com/virtcontainers/vc/pkg/factory"
	})
}

// A sandbox naming a factory must say where its VM comes from: a
// Factory without a VMSource is refused before anything starts.
func TestFactoryWithoutSource(t *testing.T) {
	c := SandboxConfig{ID: "s", Hypervisor: HypervisorConfig{Kernel: "/dev/null", Initrd: "/dev/null", Factory: "/var/lib/vc/factory"}}
	err := c.validate()
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "hypervisor.factory") || !strings.Contains(err.Error(), "VMSource") {
		t.Errorf("factory without a source: %v", err)
	}
}

// SharedFS is 9p or virtio-fs, and virtio-fs never from a factory.
func TestSharedFSConfig(t *testing.T) {
	for fs, want := range map[string]string{"nfs": `hypervisor.shared_fs "nfs": want 9p or virtio-fs`} {
		h := HypervisorConfig{Kernel: "/dev/null", Initrd: "/dev/null", SharedFS: fs}
		if err := h.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("shared_fs %q: %v", fs, err)
		}
	}
	h := HypervisorConfig{Kernel: "/dev/null", Initrd: "/dev/null", SharedFS: SharedFSVirtioFS, Factory: "/var/lib/vc/factory"}
	if err := h.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "a factory's VMs share over 9p") {
		t.Errorf("virtio-fs from a factory: %v", err)
	}
	for _, fs := range []string{"", SharedFS9P, SharedFSVirtioFS} {
		h := HypervisorConfig{Kernel: "/dev/null", Initrd: "/dev/null", SharedFS: fs}
		if err := h.Validate(); err != nil {
			t.Errorf("shared_fs %q: %v", fs, err)
		}
		if st := sharedStorage(h); (st.Driver == "virtio-fs") != (fs == SharedFSVirtioFS) || st.MountPoint != guestSharedDir || st.Source != sharedTag {
			t.Errorf("shared_fs %q: the agent's storage %+v", fs, st)
		}
	}
}

// failingSource is a VMSource that records what it was asked and fails.
type failingSource struct {
	got VMSpec
	err error
}

func (f *failingSource) TakeVM(ctx context.Context, spec VMSpec) (SourcedVM, bool, error) {
	f.got = spec
	return SourcedVM{}, false, f.err
}

// CreateSandbox asks its VMSource for the VM before booting: the source
// gets the sandbox's configuration and directory, and its failure fails
// the sandbox, which leaves nothing behind.
func TestVMSourceConsulted(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(dir, "state")
	src := &failingSource{err: fmt.Errorf("template gone: %w", errdefs.ErrDataLoss)}
	cfg := SandboxConfig{ID: "src-1", StateRoot: root, NAT: NATConfig{Disabled: true}, VMSource: src,
		Hypervisor: HypervisorConfig{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd"), Factory: "/var/lib/vc/factory"}}
	_, err := CreateSandbox(context.Background(), cfg)
	if !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "template gone") {
		t.Fatalf("CreateSandbox with a failing source: %v", err)
	}
	if src.got.Config.ID != "src-1" || src.got.Dir != filepath.Join(root, "src-1") || len(src.got.NICs) != 0 {
		t.Errorf("the source was asked for %+v (dir %s)", src.got.Config, src.got.Dir)
	}
	if _, err := os.Stat(filepath.Join(root, "src-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed sandbox's directory: %v", err)
	}
}
