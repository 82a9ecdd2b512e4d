// Package kubevol reads the kubelet's volumes that it rewrites in place
// (ConfigMap, Secret, projected, downward API) for the host side of the
// guest's copies of them, and watches them with inotify.
//
// The kubelet writes such a volume with its atomic writer: the payload in
// a timestamped directory ("..2026_12_07_05_00_00.123"), a symlink ..data
// pointing at it, and a symlink per top-level name of the payload
// ("key" -> "..data/key"). An update writes a new timestamped directory,
// renames a new symlink ..data_tmp over ..data, adds and removes the
// top-level links, and removes the previous directory.
package kubevol

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"

	pb "github.com/virtcontainers/vc/api/agent"
)

// The bounds of a copy: past either, a volume is shared as before (a bind
// over 9p, no inotify events). Kubernetes keeps a ConfigMap or a Secret
// under 1 MiB, so only a projected volume of several of them can pass
// MaxBytes. Both keep one SyncWatchedVolume under ttRPC's 4 MiB message.
const (
	// MaxBytes bounds the size of the volume's files.
	MaxBytes = 2 << 20
	// MaxEntries bounds its files and directories.
	MaxEntries = 1024
	// TmpfsSize is the size of a copy's tmpfs in the guest: two copies
	// (the previous and the new one coexist during an update), each at
	// most MaxBytes and a page per entry. A tmpfs takes only the RAM its
	// files use.
	TmpfsSize = 2 * (MaxBytes + MaxEntries*4096 + 4096)
)

var (
	// ErrTooBig is returned for a volume past MaxBytes or MaxEntries.
	ErrTooBig = errors.New("volume too big for a copy in the guest")
	// ErrNotAtomic is returned for a directory without the atomic
	// writer's layout (no ..data).
	ErrNotAtomic = errors.New("not the kubelet's atomic writer layout")
)

const dataLink = "..data"

// kubeletVolume matches the path of a volume the kubelet rewrites:
// <root>/pods/<pod uid>/volumes/kubernetes.io~<plugin>/<name>. A subPath
// of one is bound from <root>/pods/<uid>/volume-subpaths/..., another
// path (it is not updated, as with runc).
var kubeletVolume = regexp.MustCompile(`/pods/[^/]+/volumes/kubernetes\.io~(configmap|secret|projected|downward-api)/[^/]+$`)

// Match tells whether source is a volume directory the kubelet rewrites
// in place, and its plugin (configmap, secret, projected, downward-api).
func Match(source string) (plugin string, ok bool) {
	m := kubeletVolume.FindStringSubmatch(filepath.Clean(source))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Snapshot reads the volume at dir as the request that makes a copy of it:
// its top directory's mode and owner, the timestamped directory ..data
// names with its entries (content, mode, owner), and the top-level links
// (..data and one per top-level name of the payload, as the kubelet makes
// them once ..data is renamed). A directory the kubelet replaces while it
// is read is read again.
func Snapshot(dir string) (*pb.SyncWatchedVolumeRequest, error) {
	var err error
	for range 5 {
		var req *pb.SyncWatchedVolumeRequest
		req, err = snapshot(dir)
		if err == nil || !errors.Is(err, errChanged) {
			return req, err
		}
	}
	return nil, err
}

var errChanged = errors.New("changed while read")

func snapshot(dir string) (*pb.SyncWatchedVolumeRequest, error) {
	root, _, err := entry(dir, "")
	if err != nil {
		return nil, err
	}
	if root.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, fmt.Errorf("%s: not a directory: %w", dir, ErrNotAtomic)
	}
	ts, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNotAtomic)
		}
		return nil, err
	}
	if !strings.HasPrefix(ts, "..") || strings.Contains(ts, "/") || ts == dataLink {
		return nil, fmt.Errorf("%s: ..data points at %q: %w", dir, ts, ErrNotAtomic)
	}
	req := &pb.SyncWatchedVolumeRequest{Root: root, DataDir: ts}
	tsPath := filepath.Join(dir, ts)
	var size int
	top := map[string]bool{}
	err = filepath.WalkDir(tsPath, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tsPath, p)
		if rel == "." {
			rel = ""
		} else {
			top[strings.SplitN(rel, "/", 2)[0]] = true
		}
		e, n, err := entry(p, rel)
		if err != nil {
			return err
		}
		switch e.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
		case syscall.S_IFREG:
			if size+int(n) > MaxBytes {
				return fmt.Errorf("%s: files of more than %d bytes: %w", dir, MaxBytes, ErrTooBig)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Data = b
			size += len(b)
		case syscall.S_IFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.Data = []byte(t)
		default:
			return fmt.Errorf("%s: %s is neither a file, a directory nor a symlink: %w", dir, p, ErrNotAtomic)
		}
		req.Data = append(req.Data, e)
		if len(req.Data) > MaxEntries {
			return fmt.Errorf("%s: more than %d files and directories: %w", dir, MaxEntries, ErrTooBig)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The kubelet removed this directory under the walk:
			// a newer one is there.
			return nil, fmt.Errorf("%s: %w", dir, errChanged)
		}
		return nil, err
	}
	// The directory read is still the one ..data names.
	if now, err := os.Readlink(filepath.Join(dir, dataLink)); err != nil || now != ts {
		return nil, fmt.Errorf("%s: %w", dir, errChanged)
	}
	names := []string{dataLink}
	for n := range top {
		names = append(names, n)
	}
	sort.Strings(names[1:])
	for _, n := range names {
		target := filepath.Join(dataLink, n)
		if n == dataLink {
			target = ts
		}
		l := &pb.WatchedEntry{Path: n, Mode: syscall.S_IFLNK | 0o777, Data: []byte(target)}
		// The owner of the node's link, once it is there (the kubelet's
		// fsGroup walk changes it).
		var st syscall.Stat_t
		if syscall.Lstat(filepath.Join(dir, n), &st) == nil {
			l.Uid, l.Gid = st.Uid, st.Gid
		}
		req.Links = append(req.Links, l)
	}
	return req, nil
}

// entry is p's mode and owner, under the name rel, and its size.
func entry(p, rel string) (*pb.WatchedEntry, int64, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, 0, &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	return &pb.WatchedEntry{Path: rel, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid}, st.Size, nil
}
