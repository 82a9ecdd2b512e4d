package factory

import (
	"strings"
	"testing"

	"github.com/virtcontainers/vc/internal/testenv"

	// The QEMU driver, registered for the VMs these tests start (a
	// program links the drivers it runs: pkg/factory names none).
	_ "github.com/virtcontainers/vc/pkg/hypervisor/qemu"
)

// pkg/factory names no hypervisor driver: what is QEMU's it asks of the
// driver through pkg/hypervisor (TemplateDriver, Templater).
func TestNoDriverImported(t *testing.T) {
	testenv.NoImports(t, func(d string) bool {
		return strings.HasPrefix(d, "github.com/virtcontainers/vc/pkg/hypervisor/")
	})
}
