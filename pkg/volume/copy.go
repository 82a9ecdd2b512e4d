package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// CopyUp gives volume name, while it is empty, the content the
// container's root filesystem rootfs has at target, as docker does on a
// volume's first use: files, directories and symbolic links with their
// modes, owners and times, and the directory's own. Nothing to copy (no
// such path, not a directory) leaves the volume as it is. target is
// resolved inside rootfs: an image's symbolic link cannot lead it out.
func (s *Store) CopyUp(name, rootfs, target string) error {
	unlock, err := s.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	dst := s.Mountpoint(name)
	ents, err := os.ReadDir(dst)
	if err != nil {
		return fmt.Errorf("volume %s: %w", name, err)
	}
	if len(ents) > 0 {
		return nil
	}
	src, err := securejoin.SecureJoin(rootfs, target)
	if err != nil {
		return fmt.Errorf("volume %s: image path %s: %w", name, target, err)
	}
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("volume %s: image path %s: %w", name, target, err)
	}
	if err := copyTree(src, dst); err != nil {
		// Half a copy would stay as the volume's content for good (the
		// next use finds it not empty): empty it again.
		emptyDir(dst)
		return fmt.Errorf("volume %s: copy the image's %s: %w", name, target, err)
	}
	return nil
}

// copyTree copies directory src's content into the existing directory
// dst, and src's mode, owner and times onto dst.
func copyTree(src, dst string) error {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		return copyEntry(p, filepath.Join(dst, rel), d)
	})
	if err != nil {
		return err
	}
	// Directories' times last: writing into them changed them.
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		return copyMeta(p, filepath.Join(dst, rel))
	})
}

func copyEntry(src, dst string, d fs.DirEntry) error {
	fi, err := d.Info()
	if err != nil {
		return err
	}
	switch mode := fi.Mode(); {
	case mode.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		return nil // its metadata once its content is in
	case mode&fs.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, dst); err != nil {
			return err
		}
	case mode.IsRegular():
		if err := copyFile(src, dst); err != nil {
			return err
		}
	default: // devices, fifos, sockets
		var st unix.Stat_t
		if err := unix.Lstat(src, &st); err != nil {
			return err
		}
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	}
	return copyMeta(src, dst)
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
		return err
	}
	return out.Close()
}

// copyMeta gives dst src's owner, mode and times (a symbolic link: its
// owner and times).
func copyMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// After chown, which clears setuid and setgid bits.
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// emptyDir removes dir's content, keeping dir.
func emptyDir(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
