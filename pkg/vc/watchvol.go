package vc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/kubevol"
)

// Watched volumes: a ConfigMap, Secret, projected or downward API volume
// of the kubelet reaches a container as a copy in a tmpfs of the guest
// rather than as a 9p bind, since 9p raises no inotify event in the guest
// when the kubelet updates the volume on the node. The owner watches the
// node's directory (one inotify instance per sandbox, kubevol.Watcher)
// and, when the kubelet swaps its ..data, sends the new content
// (SyncWatchedVolume); the agent replays the kubelet's atomic writer on
// the copy, so a watcher in the guest sees what it sees on the node. A
// volume past kubevol's bounds, an agent without the RPC, or a process
// that does not own the VM (it could not keep the watch) share the volume
// over 9p as before.

// guestWatchedDir is where the agent mounts the copies (guest.WatchedRoot).
const guestWatchedDir = "/run/vc/watched"

// syncTimeout bounds one SyncWatchedVolume.
const syncTimeout = 30 * time.Second

// volWatches are a sandbox's watched volumes.
type volWatches struct {
	mu     sync.Mutex
	w      *kubevol.Watcher       // nil until the first volume; guarded by mu
	by     map[string]*watchedVol // by the node's path; guarded by mu
	noRPC  bool                   // the agent has no SyncWatchedVolume (logged); guarded by mu
	ctx    context.Context        // ends with the sandbox's watches
	cancel context.CancelFunc
}

// watchedVol is one volume's copy, shared by the containers that mount it.
type watchedVol struct {
	src, id string
	mu      sync.Mutex      // serializes the syncs
	synced  string          // the timestamped directory the copy holds; guarded by mu
	gone    bool            // removed; guarded by mu
	users   map[string]bool // container ids; guarded by volWatches.mu
}

// watchedID is the copy's name in the guest: the node's path hashed (it
// holds the pod's uid and the volume's name).
func watchedID(src string) string {
	h := sha256.Sum256([]byte(src))
	return hex.EncodeToString(h[:12])
}

// watchVolumes gives container cid's kubelet volumes copies in the guest
// and points their mounts in spec at them; the others stay as they are.
// The returned undo forgets cid's volumes (unwatchVolumes).
func (s *Sandbox) watchVolumes(ctx context.Context, cid string, spec *specs.Spec) func() {
	undo := func() { s.unwatchVolumes(context.WithoutCancel(ctx), cid) }
	for i := range spec.Mounts {
		m := &spec.Mounts[i]
		plugin, ok := kubevol.Match(m.Source)
		if !ok || !isBind(*m) {
			continue
		}
		log := s.log.With("container", cid, "volume", m.Source, "destination", m.Destination)
		if !s.owner {
			// The watch lives as long as the process that makes it;
			// only the VM's owner outlives the container.
			log.Info("kubelet volume shared over 9p: this process does not own the VM, it cannot keep a watch of it (no inotify events in the guest)")
			continue
		}
		v, err := s.watchVolume(ctx, cid, m.Source, log)
		if err != nil {
			if !errors.Is(err, errNoRPC) {
				log.Warn("kubelet volume shared over 9p, not as a copy in the guest: inotify watchers in the container will not see its updates", "plugin", plugin, "err", err)
			}
			continue
		}
		m.Source = guestWatchedDir + "/" + v.id
		m.Type = "bind"
		log.Info("kubelet volume copied into the guest, updates followed", "plugin", plugin, "guest", m.Source)
	}
	return undo
}

var errNoRPC = errors.New("the agent has no SyncWatchedVolume")

// watchVolume adds cid to src's copy, making it (the watch first, then
// the first sync, so no update falls between) if it is the first.
func (s *Sandbox) watchVolume(ctx context.Context, cid, src string, log *slog.Logger) (*watchedVol, error) {
	s.vols.mu.Lock()
	if s.vols.noRPC {
		s.vols.mu.Unlock()
		return nil, errNoRPC
	}
	if v := s.vols.by[src]; v != nil {
		v.users[cid] = true
		s.vols.mu.Unlock()
		return v, nil
	}
	if s.vols.w == nil {
		w, err := kubevol.NewWatcher(s.volumeChanged)
		if err != nil {
			s.vols.mu.Unlock()
			return nil, err
		}
		s.vols.w = w
		s.vols.by = map[string]*watchedVol{}
		s.vols.ctx, s.vols.cancel = context.WithCancel(context.Background())
	}
	v := &watchedVol{src: src, id: watchedID(src), users: map[string]bool{cid: true}}
	// Held until the first sync is done: a change seen meanwhile waits.
	v.mu.Lock()
	defer v.mu.Unlock()
	s.vols.by[src] = v
	w := s.vols.w
	s.vols.mu.Unlock()
	fail := func(err error) (*watchedVol, error) {
		v.gone = true
		s.vols.mu.Lock()
		delete(s.vols.by, src)
		s.vols.mu.Unlock()
		w.Remove(src)
		return nil, err
	}
	if err := w.Add(src); err != nil {
		return fail(err)
	}
	req, err := kubevol.Snapshot(src)
	if err != nil {
		return fail(err)
	}
	req.Id, req.SizeLimit = v.id, kubevol.TmpfsSize
	if _, err := s.agent.SyncWatchedVolume(ctx, req); err != nil {
		if errdefs.IsNotImplemented(err) {
			s.vols.mu.Lock()
			first := !s.vols.noRPC
			s.vols.noRPC = true
			s.vols.mu.Unlock()
			if first {
				log.Warn("the guest's agent has no SyncWatchedVolume: kubelet volumes (ConfigMap, Secret, projected, downward API) are shared over 9p, and inotify watchers in the containers will not see their updates; update the agent", "err", err)
			}
			return fail(errNoRPC)
		}
		return fail(err)
	}
	v.synced = req.DataDir
	return v, nil
}

// volumeChanged syncs the copy of the volume at src after the kubelet
// swapped its ..data. It runs on the watcher's goroutine and must not
// take s.mu (markStopped holds it while it closes the watcher).
func (s *Sandbox) volumeChanged(src string) {
	s.vols.mu.Lock()
	v, ctx := s.vols.by[src], s.vols.ctx
	s.vols.mu.Unlock()
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gone {
		return
	}
	start := time.Now()
	log := s.log.With("volume", src, "guest", guestWatchedDir+"/"+v.id)
	req, err := kubevol.Snapshot(src)
	if err != nil {
		// Past the bounds now, or no longer the kubelet's: the copy
		// cannot follow, and its mount cannot become a 9p bind under a
		// running container.
		log.Error("kubelet volume updated on the node, but its copy in the guest keeps its previous content", "err", err)
		return
	}
	if req.DataDir == v.synced {
		return
	}
	req.Id, req.SizeLimit = v.id, kubevol.TmpfsSize
	cctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if _, err := s.agent.SyncWatchedVolume(cctx, req); err != nil {
		if ctx.Err() == nil {
			log.Error("kubelet volume updated on the node: sync of its copy in the guest", "err", err)
		}
		return
	}
	v.synced = req.DataDir
	log.Info("kubelet volume updated: copy in the guest synced", "data", req.DataDir, "took", time.Since(start).Round(time.Millisecond))
}

// unwatchVolumes forgets container cid's volumes: a copy no container
// uses any more loses its watch, and the agent removes it.
func (s *Sandbox) unwatchVolumes(ctx context.Context, cid string) {
	s.vols.mu.Lock()
	var drop []*watchedVol
	for src, v := range s.vols.by {
		if !v.users[cid] {
			continue
		}
		delete(v.users, cid)
		if len(v.users) == 0 {
			delete(s.vols.by, src)
			drop = append(drop, v)
		}
	}
	w := s.vols.w
	s.vols.mu.Unlock()
	for _, v := range drop {
		if w != nil {
			w.Remove(v.src)
		}
		v.mu.Lock()
		v.gone = true
		v.mu.Unlock()
		if s.running() != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, syncTimeout)
		if _, err := s.agent.SyncWatchedVolume(cctx, &pb.SyncWatchedVolumeRequest{Id: v.id, Remove: true}); err != nil {
			s.log.Warn("remove a kubelet volume's copy in the guest", "container", cid, "volume", v.src, "err", err)
		}
		cancel()
	}
}

// stopWatches ends the sandbox's watches: its inotify instance and its
// goroutine. The VM is gone or going: the copies go with it.
func (s *Sandbox) stopWatches() {
	s.vols.mu.Lock()
	w, cancel := s.vols.w, s.vols.cancel
	s.vols.w, s.vols.by, s.vols.cancel = nil, nil, nil
	s.vols.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if w != nil {
		w.Close()
	}
}
