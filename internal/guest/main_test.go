package guest

import (
	"fmt"
	"os"
	"testing"

	"github.com/virtcontainers/vc/internal/guest/storage"
)

// TestMain lets storages be mounted below the tests' temporary
// directories, as the agent's -storage-root flag does.
func TestMain(m *testing.M) {
	if err := storage.SetMountRoot(os.TempDir()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
