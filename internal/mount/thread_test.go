package mount

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
)

// Under sees the mounts of the calling thread's mount namespace, the
// host's, even after a discarded thread unshared its own (the main
// thread, if it was the one, keeps that namespace for good).
func TestUnderAfterDiscardedThread(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: unshares a mount namespace and mounts")
	}
	for range 4 {
		done := make(chan error)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread is discarded
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				done <- err
				return
			}
			done <- unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		}()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "m")
	os.Mkdir(dir, 0o755)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	mps, err := Under(filepath.Dir(dir))
	if err != nil || !slices.Contains(mps, dir) {
		t.Fatalf("Under %s = %v, %v; want the new mount", filepath.Dir(dir), mps, err)
	}
}
