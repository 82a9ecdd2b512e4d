package container

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
)

// A GetOOMEvent whose caller is gone (its deadline passed) takes nothing:
// the next caller gets the event.
func TestOOMQueueGoneCallerTakesNothing(t *testing.T) {
	var q oomQueue
	q.init()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	q.push("c1")
	if id, err := q.pop(gone); err == nil {
		t.Fatalf("a cancelled pop took %q", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if id, err := q.pop(ctx); err != nil || id != "c1" {
		t.Fatalf("pop after a cancelled one: %q, %v; want c1", id, err)
	}
}

// noteOOM queues one event per rise of the cgroup's oom_kill count,
// whoever reads it (notification, cgroup emptied, process exit), and only
// the count decides on cgroup v2: memory.events also changes without a
// kill ("max", "oom").
func TestNoteOOMByCount(t *testing.T) {
	// Files outside cgroupfs are read only in the cgroups test mode.
	testMode := cgroups.TestMode
	cgroups.TestMode = true
	defer func() { cgroups.TestMode = testMode }()
	dir := t.TempDir()
	events := func(oom, kills int) {
		t.Helper()
		b := []byte("low 0\nhigh 0\nmax 5\noom " + itoa(oom) + "\noom_kill " + itoa(kills) + "\n")
		if err := os.WriteFile(filepath.Join(dir, "memory.events"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &Manager{}
	m.oom.init()
	c := &Container{id: "c1", m: m, log: slog.New(slog.DiscardHandler)}
	c.oom.path, c.oom.v2 = dir, true
	queued := func() int {
		m.oom.mu.Lock()
		defer m.oom.mu.Unlock()
		n := len(m.oom.ids)
		m.oom.ids = nil
		return n
	}

	events(1, 0) // out of memory, nobody killed yet
	if c.noteOOM(true) || queued() != 0 {
		t.Fatal("queued an event with oom_kill 0")
	}
	events(1, 1)
	if !c.noteOOM(false) || queued() != 1 { // read at the victim's exit
		t.Fatal("oom_kill 0 -> 1 at an exit: want one event")
	}
	if c.noteOOM(true) || c.noteOOM(false) || queued() != 0 { // the late notification, the cgroup emptied
		t.Fatal("the same kill queued twice")
	}
	events(2, 3)
	if !c.noteOOM(true) || queued() != 1 {
		t.Fatal("oom_kill 1 -> 3: want one event")
	}
	if n, err := c.OOMKills(); err != nil || n != 3 {
		t.Fatalf("OOMKills: %d, %v; want 3", n, err)
	}

	events(2, 4)
	c.removed = true
	if !c.noteOOM(false) || queued() != 0 {
		t.Fatal("queued an event for a removed container")
	}

	// No count to read (v1 kernels before 4.13): a notification is
	// queued as it is, an exit queues nothing.
	c.removed = false
	c.oom.path = filepath.Join(dir, "gone")
	if c.noteOOM(false) || queued() != 0 {
		t.Fatal("an exit without a count queued an event")
	}
	if !c.noteOOM(true) || queued() != 1 {
		t.Fatal("a notification without a count: want one event")
	}
}

func itoa(i int) string { return string(rune('0' + i)) }
