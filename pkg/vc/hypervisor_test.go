package vc

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	// The QEMU driver, registered for the VMs these tests start (a
	// program links the drivers it runs: pkg/vc names none).
	_ "github.com/virtcontainers/vc/pkg/hypervisor/qemu"
)

// pkg/vc names no hypervisor driver: a second backend registers itself
// without touching it. Its imports (not its tests') reach none of
// pkg/hypervisor's sub-packages, and no factory.
func TestNoDriverImported(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to list the package's imports: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed %d packages: %q", len(deps), deps)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/virtcontainers/vc/pkg/hypervisor/") || d == "github.com/virtcontainers/vc/pkg/factory" {
			t.Errorf("pkg/vc imports %s", d)
		}
	}
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
