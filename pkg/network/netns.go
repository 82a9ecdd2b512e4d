package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
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
