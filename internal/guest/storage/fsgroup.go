package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

// applyFSGid makes the root of a storage belong to group gid, with the
// set-group-ID bit, so files made in it inherit the group.
func applyFSGid(root string, gid *uint32) error {
	if gid == nil {
		return nil
	}
	if err := os.Lchown(root, -1, int(*gid)); err != nil {
		return fmt.Errorf("options: fsgid: %w", err)
	}
	st, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("options: fsgid: %w", err)
	}
	if err := os.Chmod(root, st.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetuid)|os.ModeSetgid); err != nil {
		return fmt.Errorf("options: fsgid: %w", err)
	}
	return nil
}

// Group permission bits fs_group adds, as Kubernetes' SetVolumeOwnership
// does: read-write for the group, and for directories search and
// set-group-ID so new files inherit the group.
const (
	fsGroupFileMask = 0o060
	fsGroupDirMask  = 0o070
)

// applyFSGroup gives the storage at root to the group of g: every file
// and directory on the storage's filesystem (nested mounts are left
// alone, symbolic links are not followed) gets the group and group
// read-write, directories the set-group-ID bit. With OnRootMismatch it
// does nothing when the root already has all that.
func applyFSGroup(root string, g *pb.FSGroup) error {
	gid := g.GetGroupId()
	var rst unix.Stat_t
	if err := unix.Stat(root, &rst); err != nil {
		return fmt.Errorf("fs_group: stat %s: %w", root, err)
	}
	if g.GetGroupChangePolicy() == pb.FSGroupChangePolicy_OnRootMismatch &&
		rst.Gid == gid && rst.Mode&unix.S_ISGID != 0 && rst.Mode&fsGroupDirMask == fsGroupDirMask {
		return nil
	}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		if st.Dev != rst.Dev {
			// Another filesystem mounted below the storage.
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err := unix.Lchown(path, -1, int(gid)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			return nil
		case unix.S_IFDIR:
			return unix.Chmod(path, st.Mode&0o7777|fsGroupDirMask|unix.S_ISGID)
		default:
			// chown cleared the set-user/group-ID bits; they stay cleared.
			return unix.Chmod(path, st.Mode&0o1777|fsGroupFileMask)
		}
	})
	if err != nil {
		return fmt.Errorf("fs_group: %w", err)
	}
	return nil
}
