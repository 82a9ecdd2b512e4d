package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The NAT needs passt and QEMU's stream netdev: with both the report names
// passt; without passt in PATH it says so (vc check prints it).
func TestCheckUserNet(t *testing.T) {
	q, err := findQEMU("")
	if err != nil {
		t.Fatalf("the qemu package's tests need QEMU: %v", err)
	}
	passt, err := os.ReadFile("/usr/bin/" + PasstBinary)
	if err != nil {
		t.Fatalf("the test needs passt installed: %v", err)
	}
	bin := t.TempDir()
	t.Setenv("PATH", bin)
	var r HostReport
	checkUserNet(&r, q)
	if r.UserNet || r.UserNetPath != "" || !strings.Contains(r.UserNetError, "passt, the user-mode network stack, is not installed") {
		t.Errorf("no passt in PATH: %+v", r)
	}
	if err := os.WriteFile(filepath.Join(bin, PasstBinary), passt, 0o755); err != nil {
		t.Fatal(err)
	}
	r = HostReport{}
	checkUserNet(&r, q)
	if !r.UserNet || r.UserNetPath != filepath.Join(bin, PasstBinary) || r.UserNetError != "" {
		t.Errorf("passt in PATH: %+v", r)
	}
}
