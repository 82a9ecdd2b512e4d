package qemu

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
)

// listeningUnix sees the sockets of the calling thread's network
// namespace, where passt was started, not those of the main thread's,
// which a caller may have left in another namespace.
func TestListeningUnixThisThread(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: unshares a network namespace")
	}
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !listeningUnix(path) {
		t.Fatal("a listening socket of this namespace not seen")
	}
	seen := make(chan bool)
	go func() {
		// This thread goes to a new namespace and is not unlocked: Go
		// ends it with the goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Error(err)
			seen <- false
			return
		}
		seen <- listeningUnix(path)
	}()
	if <-seen {
		t.Error("a thread in another network namespace sees this namespace's socket")
	}
	if !listeningUnix(path) {
		t.Error("the socket is not seen any more")
	}
}
