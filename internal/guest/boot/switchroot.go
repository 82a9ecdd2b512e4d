package boot

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mountinfo"
)

// newRootDir is where the initramfs is bind-mounted before that mount is
// moved over /.
const newRootDir = "/.vc-newroot"

// SwitchRoot moves the agent off the initramfs when it runs from one.
//
// The kernel unpacks the initrd into "rootfs", the root of the mount tree,
// which can be neither unmounted nor pivoted away from: pivot_root(2),
// which libcontainer uses to enter a container's root filesystem, fails
// with EINVAL when the current root mount has no parent. So, as PID 1 on
// rootfs, SwitchRoot bind-mounts / on a directory, moves that mount over
// / (MS_MOVE) and chroots into it: the root is then a mount with a parent,
// holding the same files, and nothing is copied.
//
// When / is not rootfs (a disk root, or the agent run on a host for tests)
// it does nothing.
func SwitchRoot() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("statfs /: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return nil
	}
	fstype, err := rootFSType()
	if err != nil {
		return err
	}
	if fstype != "rootfs" {
		return nil
	}
	start := time.Now()
	if err := bindOverRoot(newRootDir); err != nil {
		return fmt.Errorf("switch root off the initramfs: %w", err)
	}
	slog.Info("root switched", "how", "bind mount of the initramfs moved over /", "took", time.Since(start))
	return nil
}

// rootFSType returns the filesystem type of the mount at / from
// /proc/self/mountinfo, mounting /proc for the time of the read when it
// is not mounted yet.
func rootFSType() (string, error) {
	f, err := os.Open(mountinfo.Self)
	if err != nil {
		if err := os.MkdirAll("/proc", 0o555); err != nil {
			return "", fmt.Errorf("mkdir /proc: %w", err)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return "", fmt.Errorf("mount proc: %w", err)
		}
		defer unix.Unmount("/proc", unix.MNT_DETACH)
		if f, err = os.Open(mountinfo.Self); err != nil {
			return "", err
		}
	}
	defer f.Close()
	return rootFSTypeFrom(f)
}

// rootFSTypeFrom parses mountinfo and returns the type of the topmost
// mount at /.
func rootFSTypeFrom(r io.Reader) (string, error) {
	infos, err := mountinfo.Parse(r)
	if err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	m, ok := mountinfo.Lookup(infos, "/")
	if !ok {
		return "", errors.New("no mount at / in /proc/self/mountinfo")
	}
	return m.FSType, nil
}

// bindOverRoot bind-mounts / on dir, moves that mount over / and makes it
// the process's root.
func bindOverRoot(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind / on %s: %w", dir, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s over /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return unix.Chdir("/")
}

// RootHasParent tells whether the mount at / has a parent mount, which
// pivot_root(2) needs: false only on the initramfs before SwitchRoot.
func RootHasParent() bool {
	f, err := os.Open(mountinfo.Self)
	if err != nil {
		return true
	}
	defer f.Close()
	return rootHasParentFrom(f)
}

func rootHasParentFrom(r io.Reader) bool {
	infos, err := mountinfo.Parse(r)
	if err != nil {
		return true
	}
	m, ok := mountinfo.Lookup(infos, "/")
	return !ok || m.ID != m.Parent
}
