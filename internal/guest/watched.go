package guest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// Watched volumes: a kubelet-managed volume (ConfigMap, Secret,
// projected, downward API) reaches the guest over 9p, which carries no
// change notification, so an inotify watcher in a container would never
// see the kubelet's updates. The host instead keeps a copy of the volume
// in a tmpfs of the guest (RAM: a Secret never lands on a disk) and, when
// its watch on the node's directory fires, sends the new content; the
// agent then replays the kubelet's atomic writer (its AtomicWriter.Write)
// on the copy, so that the watcher sees the same events as on the node.

// WatchedRoot is where the copies are mounted, one tmpfs each.
const WatchedRoot = "/run/vc/watched"

// watchedState is the agent's watched volumes: the ids mounted.
type watchedState struct {
	mu      sync.Mutex
	mounted map[string]bool // guarded by mu
}

// SyncWatchedVolume implements AgentService.SyncWatchedVolume.
func (a *Agent) SyncWatchedVolume(ctx context.Context, req *pb.SyncWatchedVolumeRequest) (*emptypb.Empty, error) {
	id := req.GetId()
	if !validWatchedID(id) {
		return nil, invalid("id", "%q: want 1 to 64 of [a-z0-9]", id)
	}
	a.watch.mu.Lock()
	defer a.watch.mu.Unlock()
	dir := filepath.Join(WatchedRoot, id)
	if req.GetRemove() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("watched volume %s: unmount %s: %w", id, dir, err)
		}
		delete(a.watch.mounted, id)
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("watched volume %s: %w", id, err)
		}
		return &emptypb.Empty{}, nil
	}
	if err := checkWatched(req); err != nil {
		return nil, err
	}
	if !a.watch.mounted[id] {
		if req.GetSizeLimit() == 0 {
			return nil, invalid("size_limit", "0: a tmpfs needs a size")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("watched volume %s: %w", id, err)
		}
		// The copy's own mount (its size bounded), in RAM; nosuid and
		// nodev as the kubelet's own tmpfs for Secrets. Not noexec: a
		// ConfigMap may hold scripts (defaultMode 0755).
		opts := fmt.Sprintf("size=%d,mode=700", req.GetSizeLimit())
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			os.Remove(dir)
			return nil, fmt.Errorf("watched volume %s: mount a tmpfs (%s) on %s: %w", id, opts, dir, err)
		}
		if a.watch.mounted == nil {
			a.watch.mounted = map[string]bool{}
		}
		a.watch.mounted[id] = true
	}
	if err := ApplyWatched(dir, req); err != nil {
		return nil, fmt.Errorf("watched volume %s: %w", id, err)
	}
	return &emptypb.Empty{}, nil
}

func validWatchedID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// The kubelet's names in a volume's top directory.
const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
)

// checkWatched refuses a request whose paths would leave the volume, or
// whose layout is not the atomic writer's.
func checkWatched(req *pb.SyncWatchedVolumeRequest) error {
	ts := req.GetDataDir()
	if !strings.HasPrefix(ts, "..") || strings.Contains(ts, "/") || ts == ".." || ts == dataLink || ts == dataLinkTmp {
		return invalid("data_dir", "%q: want a name starting with \"..\"", ts)
	}
	if req.GetRoot().GetMode()&unix.S_IFMT != unix.S_IFDIR {
		return invalid("root.mode", "%#o: not a directory", req.GetRoot().GetMode())
	}
	for i, e := range req.GetData() {
		if e.GetPath() == "" && i == 0 {
			if e.GetMode()&unix.S_IFMT != unix.S_IFDIR {
				return invalid("data[0].mode", "%#o: data_dir itself is not a directory", e.GetMode())
			}
			continue
		}
		if !relPath(e.GetPath()) {
			return invalid(fmt.Sprintf("data[%d].path", i), "%q: want a clean relative path", e.GetPath())
		}
		switch e.GetMode() & unix.S_IFMT {
		case unix.S_IFREG, unix.S_IFDIR, unix.S_IFLNK:
		default:
			return invalid(fmt.Sprintf("data[%d].mode", i), "%#o: not a file, directory or symlink", e.GetMode())
		}
	}
	hasData := false
	for i, l := range req.GetLinks() {
		if l.GetMode()&unix.S_IFMT != unix.S_IFLNK || strings.Contains(l.GetPath(), "/") || l.GetPath() == "" || l.GetPath() == "." || l.GetPath() == ".." || l.GetPath() == dataLinkTmp {
			return invalid(fmt.Sprintf("links[%d]", i), "%q (mode %#o): want a symlink in the top directory", l.GetPath(), l.GetMode())
		}
		if l.GetPath() == dataLink {
			if string(l.GetData()) != ts {
				return invalid(fmt.Sprintf("links[%d].data", i), "..data points at %q, not data_dir %q", l.GetData(), ts)
			}
			hasData = true
		}
	}
	if !hasData {
		return invalid("links", "no ..data")
	}
	return nil
}

func relPath(p string) bool {
	return p != "" && p != "." && !filepath.IsAbs(p) && filepath.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}

// ApplyWatched makes root hold req's layout by the kubelet's atomic
// writer's steps: the new timestamped directory is written whole, then
// ..data_tmp pointing at it is renamed over ..data, the top-level links
// of new names made, those of names gone removed, and the previous
// timestamped directory removed. A watcher of root sees the same events
// as one of the node's directory. A request for the directory ..data
// already names changes only root's mode and owner. req must have
// passed checkWatched.
func ApplyWatched(root string, req *pb.SyncWatchedVolumeRequest) error {
	if err := setOwnerMode(root, req.GetRoot()); err != nil {
		return err
	}
	ts := req.GetDataDir()
	old, err := os.Readlink(filepath.Join(root, dataLink))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if old != ts {
		if err := writeDataDir(root, req); err != nil {
			// Not left to fill the tmpfs (a copy past its size).
			os.RemoveAll(filepath.Join(root, ts))
			return err
		}
		tmp := filepath.Join(root, dataLinkTmp)
		os.Remove(tmp)
		if err := os.Symlink(ts, tmp); err != nil {
			return err
		}
		for _, l := range req.GetLinks() {
			if l.GetPath() == dataLink {
				if err := unix.Lchown(tmp, int(l.GetUid()), int(l.GetGid())); err != nil {
					return fmt.Errorf("lchown %s: %w", tmp, err)
				}
			}
		}
		if err := os.Rename(tmp, filepath.Join(root, dataLink)); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	// The links of new top-level names, then the removal of those gone.
	want := map[string]bool{dataLink: true}
	for _, l := range req.GetLinks() {
		if l.GetPath() == dataLink {
			continue
		}
		want[l.GetPath()] = true
		p := filepath.Join(root, l.GetPath())
		cur, err := os.Readlink(p)
		if err == nil && cur == string(l.GetData()) {
			// Kept, with the node's owner (the kubelet's fsGroup
			// pass changes it).
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if st.Uid != l.GetUid() || st.Gid != l.GetGid() {
				if err := unix.Lchown(p, int(l.GetUid()), int(l.GetGid())); err != nil {
					return fmt.Errorf("lchown %s: %w", p, err)
				}
			}
			continue
		}
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			// Not the kubelet's layout (its links never change
			// target): replaced.
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
		if err := os.Symlink(string(l.GetData()), p); err != nil {
			return err
		}
		if err := unix.Lchown(p, int(l.GetUid()), int(l.GetGid())); err != nil {
			return fmt.Errorf("lchown %s: %w", p, err)
		}
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	// The links of names gone, then the previous timestamped directory
	// (or one a failed sync left), in the atomic writer's order.
	for _, dots := range []bool{false, true} {
		for _, e := range ents {
			name := e.Name()
			if name == ts || want[name] || strings.HasPrefix(name, "..") != dots {
				continue
			}
			if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeDataDir writes req's timestamped directory, whole, under root.
func writeDataDir(root string, req *pb.SyncWatchedVolumeRequest) error {
	dir := filepath.Join(root, req.GetDataDir())
	// What a failed sync left of the same name.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	top := &pb.WatchedEntry{Mode: unix.S_IFDIR | 0o755}
	for i, e := range req.GetData() {
		if i == 0 && e.GetPath() == "" {
			top = e
			continue
		}
		p := filepath.Join(dir, e.GetPath())
		switch e.GetMode() & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
		case unix.S_IFLNK:
			if err := os.Symlink(string(e.GetData()), p); err != nil {
				return err
			}
		default:
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			_, err = f.Write(e.GetData())
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		if err := setOwnerMode(p, e); err != nil {
			return err
		}
	}
	return setOwnerMode(dir, top)
}

// setOwnerMode gives p e's owner, then e's permission bits (chown clears
// setuid and setgid), a symlink only its owner.
func setOwnerMode(p string, e *pb.WatchedEntry) error {
	if err := unix.Lchown(p, int(e.GetUid()), int(e.GetGid())); err != nil {
		return fmt.Errorf("lchown %s: %w", p, err)
	}
	if e.GetMode()&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	if err := unix.Chmod(p, e.GetMode()&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", p, err)
	}
	return nil
}
