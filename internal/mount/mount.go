// Package mount removes directory trees that may hold mounts without ever
// deleting through one: a sandbox's state directory holds bind mounts of
// users' root filesystems and volumes, and os.RemoveAll would follow them.
package mount

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mountinfo"
)

// Under lists the mount points at or below dir, deepest first.
func Under(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	infos, err := mountinfo.Read(mountinfo.Thread)
	if err != nil {
		return nil, err
	}
	var mps []string
	for _, m := range infos {
		if m.MountPoint == dir || strings.HasPrefix(m.MountPoint, dir+"/") {
			mps = append(mps, m.MountPoint)
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	return mps, nil
}

// UnmountUnder detaches every mount at or below dir, deepest first, and
// fails if any is still there afterwards.
func UnmountUnder(dir string) error {
	mps, err := Under(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	if left, err := Under(dir); err != nil || len(left) > 0 {
		return fmt.Errorf("mounts left under %s: %v %w", dir, left, err)
	}
	return nil
}

// RemoveAll removes dir and everything below it, after detaching every
// mount below it; it refuses (and removes nothing) if a mount stays.
func RemoveAll(dir string) error {
	if err := UnmountUnder(dir); err != nil {
		return fmt.Errorf("not removing %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%w (left: %s)", err, strings.Join(left(dir), " "))
	}
	return nil
}

// left names what is still below dir, for an error message.
func left(dir string) []string {
	var names []string
	filepath.WalkDir(dir, func(p string, _ fs.DirEntry, _ error) error {
		if r, err := filepath.Rel(dir, p); err == nil && r != "." {
			names = append(names, r)
		}
		return nil
	})
	return names
}
