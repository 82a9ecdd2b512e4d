package storage

import (
	"os"
	"testing"

	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil/mountns"
)

// privateNS is true when the tests run, as root, in a mount namespace of
// their own, where they may really mount.
var privateNS bool

// TestMain re-runs the test binary, when root, in a new mount namespace
// whose mounts do not propagate back, so the tests can mount for real
// without touching the machine's mount table.
func TestMain(m *testing.M) {
	privateNS = mountns.Enter()
	// The tests mount below their temporary directories.
	mountRoot = os.TempDir()
	os.Exit(m.Run())
}

func requireMountNS(t *testing.T) {
	t.Helper()
	if !privateNS {
		testenv.Skip(t, "needs root: mounts for real in a private mount namespace")
	}
}
