package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// The NAT needs passt and QEMU's stream netdev: with both the report names
// passt; without passt in PATH it says so (vc check prints it).
func TestCheckUserNet(t *testing.T) {
	q, err := findQEMU("")
	if err != nil {
		t.Fatalf("the qemu package's tests need QEMU: %v", err)
	}
	passt, err := os.ReadFile("/usr/bin/" + passtBinary)
	if err != nil {
		t.Fatalf("the test needs passt installed: %v", err)
	}
	bin := t.TempDir()
	t.Setenv("PATH", bin)
	var r hypervisor.HostReport
	checkUserNet(&r, q)
	if r.UserNet || r.UserNetPath != "" || !strings.Contains(r.UserNetError, "passt, the user-mode network stack, is not installed") {
		t.Errorf("no passt in PATH: %+v", r)
	}
	if err := os.WriteFile(filepath.Join(bin, passtBinary), passt, 0o755); err != nil {
		t.Fatal(err)
	}
	r = hypervisor.HostReport{}
	checkUserNet(&r, q)
	if !r.UserNet || r.UserNetPath != filepath.Join(bin, passtBinary) || r.UserNetError != "" {
		t.Errorf("passt in PATH: %+v", r)
	}
}
