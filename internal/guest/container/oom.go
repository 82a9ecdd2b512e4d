package container

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// oomQueueLimit bounds the OOM events kept for GetOOMEvent; older ones
// are dropped first when nobody asks for them.
const oomQueueLimit = 64

// oomQueue holds the ids of containers the kernel OOM-killed in, until
// GetOOMEvent takes them.
type oomQueue struct {
	mu      sync.Mutex
	ids     []string
	changed chan struct{}
}

func (q *oomQueue) init() { q.changed = make(chan struct{}) }

func (q *oomQueue) push(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ids) >= oomQueueLimit {
		q.ids = q.ids[1:]
	}
	q.ids = append(q.ids, id)
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *oomQueue) pop(ctx context.Context) (string, error) {
	for {
		// A caller that is gone takes nothing: its answer would be lost
		// with the event (ttRPC's clients pass their deadline on).
		if err := ctx.Err(); err != nil {
			return "", err
		}
		q.mu.Lock()
		if len(q.ids) > 0 {
			id := q.ids[0]
			q.ids = q.ids[1:]
			q.mu.Unlock()
			return id, nil
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// OOMEvent waits until the kernel OOM-kills a process in some container
// and returns that container's id.
func (m *Manager) OOMEvent(ctx context.Context) (string, error) {
	return m.oom.pop(ctx)
}

// oomCounter follows a container's OOM kill count (memory.events'
// oom_kill on cgroup v2, memory.oom_control's on v1), so that each rise is
// queued once, by whichever of these sees it first: the kernel's
// notification, the cgroup emptying, or the exit of one of the
// container's processes.
//
// The notification alone loses kills. On cgroup v2 the kernel notifies
// memory.events at most once per 10 ms or so and delays the rest: the
// "max" event of the failed charge is announced at once (the count still
// 0 when read), the oom_kill that follows within the same charge later.
// Meanwhile the victim dies, the cgroup empties, and libcontainer stops
// watching on cgroup.events' "populated 0" before the delayed
// notification comes: the kill was never queued (seen in a loop of 20
// OOM-killed containers in a 2-vCPU guest).
type oomCounter struct {
	mu   sync.Mutex
	path string // the cgroup directory holding the count; "": none
	v2   bool
	seen uint64
}

// errNoOOMCount: the container's cgroup directory is not known.
var errNoOOMCount = errors.New("no memory cgroup directory to read the OOM kill count from")

// count reads the cgroup's OOM kill count.
func (o *oomCounter) count() (uint64, error) {
	switch {
	case o.path == "":
		return 0, errNoOOMCount
	case o.v2:
		return fs2.OOMKillCount(o.path)
	default:
		return fs.OOMKillCount(o.path)
	}
}

// noteOOM queues an OOM event for the container if its cgroup counts more
// OOM kills than seen so far. notified says the kernel announced an OOM:
// where no count can be read (v1 kernels before 4.13), that alone is
// queued. Nothing is queued once the container is removed. It tells
// whether an event was due.
func (c *Container) noteOOM(notified bool) bool {
	c.oom.mu.Lock()
	defer c.oom.mu.Unlock()
	n, err := c.oom.count()
	switch {
	case err == nil && n <= c.oom.seen:
		return false
	case err == nil:
		c.oom.seen = n
	case !notified:
		return false
	}
	c.mu.Lock()
	removed := c.removed
	c.mu.Unlock()
	if !removed {
		c.log.Warn("OOM kill in container", "oom_kills", n)
		c.m.oom.push(c.id)
	}
	return true
}

// OOMKills returns how many processes the kernel OOM-killed in the
// container's cgroup (an error where the kernel does not count them).
func (c *Container) OOMKills() (uint64, error) {
	c.oom.mu.Lock()
	defer c.oom.mu.Unlock()
	return c.oom.count()
}

// watchOOM forwards the container's OOM notifications to the agent's
// queue. libcontainer's channel closes when the cgroup goes away (v1) or
// empties (v2); it is drained to the end so libcontainer's goroutine
// never blocks, and the count is read once more then. Every process exit
// reads it too (Process.waitExit), before the exit is reported: an OOM
// kill is queued before the victim's exit is known.
func (c *Container) watchOOM() {
	if st, err := c.lc.State(); err == nil {
		c.oom.mu.Lock()
		if cgroups.IsCgroup2UnifiedMode() {
			c.oom.path, c.oom.v2 = st.CgroupPaths[""], true
		} else {
			c.oom.path = st.CgroupPaths["memory"]
		}
		// Kills before the container (a cgroup reused) are not its own.
		c.oom.seen, _ = c.oom.count()
		c.oom.mu.Unlock()
	}
	ch, err := c.lc.NotifyOOM()
	if err != nil {
		c.log.Warn("no OOM notifications for this container", "err", err)
		return
	}
	go func() {
		for range ch {
			// v1 notifies when the cgroup runs out of memory, before
			// the kill: the count is read again for a moment.
			for i := 0; !c.noteOOM(true) && !c.oom.v2 && i < 10; i++ {
				time.Sleep(10 * time.Millisecond)
			}
		}
		c.noteOOM(false)
	}()
}
