package shim

import (
	"context"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

// OOM kills reach containerd as TaskOOM two ways: the agent's OOM events,
// which watchSandbox follows, and the container's OOM kill count in the
// guest, read before an exit is reported. The count puts TaskOOM before
// the TaskExit it explains whatever the poller is doing: between two
// GetOOMEvent calls, or with the answer in flight, when the exit is known.
// containerd's CRI sets the reason OOMKilled from TaskOOM, or on an exit
// status of 137 from the metrics' OOM kill count (toMetrics).

// oomCheckTimeout bounds the read of the count before an exit.
const oomCheckTimeout = 10 * time.Second

// oomFromEvent reports an OOM event of the agent's for container cid,
// unless the count read at an exit reported that kill already.
func (s *Service) oomFromEvent(cid string) {
	c, err := s.getContainer(cid)
	if err != nil {
		// Not (or no longer) a task of this shim: reported as it is.
		s.log.Info("container OOM-killed", "container", cid)
		s.send(oomEvent(cid))
		return
	}
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	c.oomEvents++
	if c.oomEvents <= c.oomReported {
		c.log.Debug("OOM event already reported", "events", c.oomEvents, "reported", c.oomReported)
		return
	}
	c.oomReported = c.oomEvents
	c.log.Info("container OOM-killed")
	s.send(oomEvent(cid))
}

// oomBeforeExit reports an OOM kill the guest counted in c's cgroup and
// no TaskOOM reported yet. It runs before a TaskExit of c goes out. An
// agent that does not count kills (Kata's) leaves it to the events.
func (s *Service) oomBeforeExit(sb *vc.Sandbox, c *container) {
	ctx, cancel := context.WithTimeout(context.Background(), oomCheckTimeout)
	defer cancel()
	st, err := sb.Container(c.id).Stats(ctx)
	if err != nil {
		c.log.Debug("no OOM kill count before the exit", "err", err)
		return
	}
	if n, ok := memoryStat(st, vc.OOMKillStat); ok {
		s.oomFromCount(c, n)
	}
}

// oomFromCount reports an OOM kill if c's count of them, n, is more than
// TaskOOM reported.
func (s *Service) oomFromCount(c *container, n uint64) {
	c.oomMu.Lock()
	defer c.oomMu.Unlock()
	if n <= c.oomReported {
		return
	}
	c.oomReported = n
	c.log.Info("container OOM-killed", "oom_kills", n)
	s.send(oomEvent(c.id))
}
