package shim

import (
	"context"
	"log/slog"
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/pkg/shutdown"

	"github.com/virtcontainers/vc/pkg/vc"
)

// TestOOMReportedOnce: a kill the count read before the exit reported is
// not reported again when the agent's event for it comes; a later event
// (another kill) is, and so is one for a container the shim does not know.
func TestOOMReportedOnce(t *testing.T) {
	_, sd := shutdown.WithShutdown(context.Background())
	defer sd.Shutdown()
	log := slog.New(slog.DiscardHandler)
	c := &container{id: "c1", log: log}
	s := &Service{events: make(chan any, 16), sd: sd, log: log, containers: map[string]*container{"c1": c}}
	sent := func() []string {
		var ids []string
		for {
			select {
			case e := <-s.events:
				ids = append(ids, e.(*eventstypes.TaskOOM).ContainerID)
			default:
				return ids
			}
		}
	}

	s.oomFromCount(c, 1) // the exit path: one kill counted
	s.oomFromEvent("c1") // the agent's event for it, late
	if got := sent(); len(got) != 1 || got[0] != "c1" {
		t.Fatalf("one kill, counted then its event: TaskOOM for %q, want one for c1", got)
	}
	s.oomFromCount(c, 1) // another exit, no new kill
	if got := sent(); len(got) != 0 {
		t.Fatalf("no new kill: TaskOOM for %q", got)
	}
	s.oomFromEvent("c1") // a second kill, its event first
	s.oomFromCount(c, 2)
	if got := sent(); len(got) != 1 {
		t.Fatalf("a second kill, its event then counted: TaskOOM for %q, want one", got)
	}
	s.oomFromEvent("gone")
	if got := sent(); len(got) != 1 || got[0] != "gone" {
		t.Fatalf("event for an unknown container: TaskOOM for %q, want one", got)
	}
}

// TestMetricsOOMKill: the agent's OOM kill count becomes the metrics'
// memory.oom_control oom_kill, which containerd's CRI reads.
func TestMetricsOOMKill(t *testing.T) {
	st := &vc.ContainerStats{Memory: &vc.MemoryStats{
		Stats: map[string]uint64{"anon": 1, vc.OOMKillStat: 2},
	}}
	if got := toMetrics(st).GetMemoryOomControl().GetOomKill(); got != 2 {
		t.Fatalf("oom_kill %d, want 2", got)
	}
	st.Memory.Stats = map[string]uint64{"anon": 1}
	if m := toMetrics(st); m.MemoryOomControl != nil {
		t.Fatalf("no count from the agent: oom control %+v, want none", m.MemoryOomControl)
	}
}
