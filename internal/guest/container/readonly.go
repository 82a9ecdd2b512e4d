package container

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// bindReadonlyNodes turns the spec's readonly paths that name a device
// node, a FIFO or a socket into read-only bind mounts of the node on
// itself, appended to the spec's mounts.
//
// libcontainer makes a readonly path read-only by bind-mounting it on
// itself and remounting it with the flags statfs(2) reports for it. On a
// root filesystem the host shares over 9p that statfs is QEMU's, which
// opens the file to fstatfs it: a device node without a driver behind it
// fails (ENXIO, "statfs /readonly-device: no such device or address"). A
// bind mount from the spec needs no statfs of the node; the flags kept
// (nosuid, nodev, noexec) are read here from its directory, which 9p
// answers. Paths libcontainer handles well are left to it: files,
// directories, symbolic links, missing paths (ignored, as runc does) and
// paths on a filesystem the spec mounts (proc, tmpfs...).
func bindReadonlyNodes(s *specs.Spec) error {
	if s.Linux == nil || len(s.Linux.ReadonlyPaths) == 0 {
		return nil
	}
	var keep []string
	for i, p := range s.Linux.ReadonlyPaths {
		src, ok := guestPathOf(s, p)
		if !ok {
			keep = append(keep, p)
			continue
		}
		fi, err := os.Lstat(src)
		if err != nil || !isNode(fi.Mode()) {
			keep = append(keep, p)
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(filepath.Dir(src), &st); err != nil {
			return fmt.Errorf("OCI.Linux.ReadonlyPaths[%d] %q: statfs %s: %w", i, p, filepath.Dir(src), err)
		}
		opts := []string{"bind", "ro"}
		for _, f := range keptFlags {
			if st.Flags&f.flag != 0 {
				opts = append(opts, f.opt)
			}
		}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: filepath.Clean(p), Type: "bind", Source: src, Options: opts})
	}
	s.Linux.ReadonlyPaths = keep
	return nil
}

// keptFlags are the flags of the mount under a readonly path that
// libcontainer keeps on it.
var keptFlags = []struct {
	flag int64
	opt  string
}{{unix.ST_NOSUID, "nosuid"}, {unix.ST_NODEV, "nodev"}, {unix.ST_NOEXEC, "noexec"}}

// isNode reports whether mode is a device node, a FIFO or a socket.
func isNode(mode os.FileMode) bool {
	return mode&(os.ModeDevice|os.ModeNamedPipe|os.ModeSocket) != 0
}

// guestPathOf returns where the container path p is in the agent's
// filesystem before the container starts: below the spec's root or below
// the source of the bind mount that will cover it. ok is false when p is
// relative, is on a filesystem the container mounts itself (tmpfs, proc,
// sysfs...), or goes through a symbolic link (which would resolve
// against the container's root, not here).
func guestPathOf(s *specs.Spec, p string) (string, bool) {
	if !filepath.IsAbs(p) || s.Root == nil {
		return "", false
	}
	p = filepath.Clean(p)
	root, rel := s.Root.Path, p
	// The last mount at or above p is the one p is on in the container.
	for _, m := range s.Mounts {
		d := filepath.Clean(m.Destination)
		r, err := filepath.Rel(d, p)
		if err != nil || r == ".." || strings.HasPrefix(r, "../") {
			continue
		}
		if !isBindMount(m) {
			root = ""
			continue
		}
		root, rel = m.Source, r
	}
	if root == "" {
		return "", false
	}
	joined, err := securejoin.SecureJoin(root, rel)
	if err != nil || joined != filepath.Join(root, rel) {
		return "", false
	}
	return joined, true
}

func isBindMount(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}
