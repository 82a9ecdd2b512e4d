package mount

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
)

// RemoveAll of a tree holding a bind mount of another directory removes
// the tree and leaves the bound directory's files alone.
func TestRemoveAllDoesNotFollowMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: bind mounts")
	}
	precious := t.TempDir()
	os.WriteFile(filepath.Join(precious, "keep"), []byte("data"), 0o644)
	tree := filepath.Join(t.TempDir(), "state")
	target := filepath.Join(tree, "shared", "c", "rootfs")
	if err := os.MkdirAll(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(precious, target, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	if mps, err := Under(tree); err != nil || len(mps) != 1 || mps[0] != target {
		t.Fatalf("Under(%s) = %v, %v", tree, mps, err)
	}
	if err := RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tree); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", tree, err)
	}
	if b, err := os.ReadFile(filepath.Join(precious, "keep")); err != nil || string(b) != "data" {
		t.Fatalf("the bound directory lost its file: %q %v", b, err)
	}
}
