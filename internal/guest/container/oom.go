package container

import (
	"context"
	"sync"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fscommon"
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

// watchOOM forwards the container's OOM notifications to the agent's
// queue. libcontainer's channel closes when the cgroup goes away (v1) or
// empties (v2); it is drained to the end so libcontainer's goroutine
// never blocks, but nothing is forwarded once the container is removed.
func (c *Container) watchOOM() {
	ch, err := c.lc.NotifyOOM()
	if err != nil {
		c.log.Warn("no OOM notifications for this container", "err", err)
		return
	}
	// On cgroup v2 libcontainer notifies on every change of memory.events
	// once oom_kill is non-zero; only increases of oom_kill count.
	memEvents := ""
	if cgroups.IsCgroup2UnifiedMode() {
		if st, err := c.lc.State(); err == nil {
			if dir := st.CgroupPaths[""]; dir != "" {
				memEvents = dir
			}
		}
	}
	go func() {
		var last uint64
		for range ch {
			if memEvents != "" {
				n, err := fscommon.GetValueByKey(memEvents, "memory.events", "oom_kill")
				if err == nil {
					if n <= last {
						continue
					}
					last = n
				}
			}
			c.mu.Lock()
			removed := c.removed
			c.mu.Unlock()
			if removed {
				continue
			}
			c.log.Warn("OOM kill in container")
			c.m.oom.push(c.id)
		}
	}()
}
