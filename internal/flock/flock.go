// Package flock takes whole-file advisory locks (flock(2)) on lock files,
// the way the image and volume stores keep concurrent vc processes apart.
// A lock lives as long as its open file: releasing it closes the file, and
// a process that dies releases its locks with its files.
package flock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Lock opens path (created 0600 if missing) and waits for its lock,
// exclusive or shared. release closes the file, which drops the lock.
func Lock(path string, exclusive bool) (release func(), err error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	release, _, err = lock(path, how) // a blocking flock has no EWOULDBLOCK
	return release, err
}

// TryLock takes path's lock exclusively if no one holds it; ok is false
// (and err nil) if someone does.
func TryLock(path string) (release func(), ok bool, err error) {
	return lock(path, unix.LOCK_EX|unix.LOCK_NB)
}

func lock(path string, how int) (func(), bool, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, false, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, true, nil
}
