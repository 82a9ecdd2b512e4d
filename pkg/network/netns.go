package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openNS opens a network namespace by path, with an error naming it.
func openNS(path string) (netns.NsHandle, error) {
	if path == "" {
		return -1, fmt.Errorf("netns path: empty: %w", ErrNoNetNS)
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return -1, fmt.Errorf("netns %q does not exist: %w", path, err)
		}
		return -1, fmt.Errorf("netns %q: %w", path, err)
	}
	return ns, nil
}

// ErrNoNetNS is returned for an empty namespace path.
var ErrNoNetNS = errors.New("no network namespace")

// inNS runs fn on an OS thread switched into the namespace at path, and
// switches back. A thread that cannot be switched back is not reused: its
// goroutine ends locked, which makes the runtime end the thread.
func inNS(path string, fn func() error) error {
	ns, err := openNS(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return // thread ends locked: discarded
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns %q: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Left locked: the runtime ends this thread.
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %q: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// MakeNetNS makes a new network namespace pinned at path (a bind mount
// on an empty file) and runs fn on a thread in it, which fn is given (nil:
// nothing is run).
// The thread goes back to the namespace it was in; a thread that cannot
// is not reused (its goroutine ends locked: the Go runtime ends it).
// On error nothing is left at path.
func MakeNetNS(path string, fn func(tid int) error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		err = pinNetNS(path)
		if err == nil && fn != nil {
			if err = fn(unix.Gettid()); err != nil {
				RemoveNetNS(path)
			}
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("back to the host's network namespace: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// pinNetNS bind-mounts the calling thread's network namespace on path.
func pinNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("network namespace: %w", err)
	}
	f.Close()
	if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("pin the network namespace at %s: %w", path, err)
	}
	return nil
}

// RemoveNetNS unpins a network namespace made by MakeNetNS; the
// namespace goes once nothing else holds it.
func RemoveNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
