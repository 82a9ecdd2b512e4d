package boot

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// switchedEnv marks the agent re-executed by SwitchRoot; its value is how
// long the switch took.
const switchedEnv = "VC_AGENT_ROOT_SWITCHED"

// newRootDir is where the tmpfs is mounted on the initramfs before it is
// moved over /.
const newRootDir = "/.vc-newroot"

// SwitchRoot moves the agent off the initramfs when it runs from one.
//
// The kernel unpacks the initrd into "rootfs", the root of the mount tree,
// which can be neither unmounted nor pivoted away from: pivot_root(2),
// which libcontainer uses to enter a container's root filesystem, fails
// with EINVAL there. So, as PID 1 on rootfs, SwitchRoot mounts a tmpfs,
// moves the initramfs contents into it (freeing the rootfs memory as it
// goes), moves that tmpfs over / (MS_MOVE), chroots into it and
// re-executes the agent, which then runs with a real mount as its root.
// On success in that case it does not return.
//
// When / is not rootfs (a disk root, or the agent run on a host for tests)
// it does nothing. After the re-exec it logs "root switched" and returns
// nil.
func SwitchRoot() error {
	if took, ok := os.LookupEnv(switchedEnv); ok {
		os.Unsetenv(switchedEnv)
		fstype, _ := rootFSType()
		slog.Info("root switched", "fstype", fstype, "took", took)
		return nil
	}
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
	if err := moveRoot(newRootDir); err != nil {
		return fmt.Errorf("switch root off the initramfs: %w", err)
	}
	exe := os.Args[0]
	if !filepath.IsAbs(exe) {
		exe = "/init"
	}
	env := append(os.Environ(), switchedEnv+"="+time.Since(start).Round(time.Microsecond).String())
	err = unix.Exec(exe, os.Args, env)
	return fmt.Errorf("re-execute %s after switching root: %w", exe, err)
}

// rootFSType returns the filesystem type of the mount at / from
// /proc/self/mountinfo, mounting /proc for the time of the read when it
// is not mounted yet.
func rootFSType() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if err := os.MkdirAll("/proc", 0o555); err != nil {
			return "", fmt.Errorf("mkdir /proc: %w", err)
		}
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return "", fmt.Errorf("mount proc: %w", err)
		}
		defer unix.Unmount("/proc", unix.MNT_DETACH)
		if f, err = os.Open("/proc/self/mountinfo"); err != nil {
			return "", err
		}
	}
	defer f.Close()
	return rootFSTypeFrom(f)
}

// rootFSTypeFrom parses mountinfo and returns the type of the topmost
// mount at /.
func rootFSTypeFrom(r io.Reader) (string, error) {
	fstype := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			continue
		}
		if f[4] == "/" {
			fstype = g[0]
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if fstype == "" {
		return "", errors.New("no mount at / in /proc/self/mountinfo")
	}
	return fstype, nil
}

// moveRoot mounts a tmpfs at dir, moves everything on the root filesystem
// into it, and makes it the root: MS_MOVE over /, chroot, chdir /.
func moveRoot(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	var root unix.Stat_t
	if err := unix.Lstat("/", &root); err != nil {
		return err
	}
	ents, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if "/"+e.Name() == dir {
			continue
		}
		if err := moveEntry(filepath.Join("/", e.Name()), filepath.Join(dir, e.Name()), root.Dev); err != nil {
			return err
		}
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(dir, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s over /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return os.Chdir("/")
}

// moveEntry copies src to dst with its mode, owner and device numbers,
// then removes src. A directory on another filesystem (a mount point) is
// recreated empty and left in place.
func moveEntry(src, dst string, rootDev uint64) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	perm := st.Mode & 0o7777
	var err error
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		err = os.Mkdir(dst, 0o700)
	case unix.S_IFREG:
		err = copyFile(src, dst)
	case unix.S_IFLNK:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = os.Symlink(target, dst)
		}
	default: // devices, fifos, sockets
		err = unix.Mknod(dst, st.Mode, int(st.Rdev))
	}
	if err != nil {
		return fmt.Errorf("move %s: %w", src, err)
	}
	// Owner before mode: chown clears set-id bits.
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", dst, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == rootDev {
		ents, err := os.ReadDir(src)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := moveEntry(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), rootDev); err != nil {
				return err
			}
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, perm); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	}
	if st.Dev == rootDev {
		// Frees the rootfs memory (a directory once it is empty).
		_ = os.Remove(src)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
