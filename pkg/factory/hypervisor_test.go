package factory

import (
	"os/exec"
	"strings"
	"testing"

	// The QEMU driver, registered for the VMs these tests start (a
	// program links the drivers it runs: pkg/factory names none).
	_ "github.com/virtcontainers/vc/pkg/hypervisor/qemu"
)

// pkg/factory names no hypervisor driver: what is QEMU's it asks of the
// driver through pkg/hypervisor (TemplateDriver, Templater).
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
		if strings.HasPrefix(d, "github.com/virtcontainers/vc/pkg/hypervisor/") {
			t.Errorf("pkg/factory imports %s", d)
		}
	}
}
