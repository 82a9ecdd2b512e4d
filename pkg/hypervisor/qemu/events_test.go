package qemu

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp/qmptest"
)

// A VM stopped on an internal error (what a KVM emulation failure does)
// is killed rather than left paused forever.
func TestInternalErrorKillsVM(t *testing.T) {
	s := qmptest.New(t)
	s.Handle("query-status", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Reply(id, map[string]any{"running": false, "status": "internal-error"})
	})
	s.Handle("stop-now", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Reply(id, struct{}{})
		s.Event("STOP", map[string]any{})
	})
	q := dialFake(t, s)
	proc := watchedChild(t, q, "ie")
	if err := q.Execute(t.Context(), "stop-now", nil, nil); err != nil {
		t.Fatal(err)
	}
	if !proc.wait(5 * time.Second) {
		t.Fatal("a VM in internal-error was not killed")
	}
	if got := proc.status(); got != "killed by signal 9 (killed)" {
		t.Errorf("status %q", got)
	}
}

// A plain pause (STOP with status paused) leaves the VM alone.
func TestPauseDoesNotKill(t *testing.T) {
	s := qmptest.New(t)
	asked := make(chan struct{}, 1)
	s.Handle("query-status", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Reply(id, map[string]any{"running": false, "status": "paused"})
		asked <- struct{}{}
	})
	s.Handle("stop", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Reply(id, struct{}{})
		s.Event("STOP", map[string]any{})
	})
	q := dialFake(t, s)
	proc := watchedChild(t, q, "p")
	if err := q.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	case <-time.After(5 * time.Second):
		t.Fatal("STOP did not make the driver look at the status")
	}
	if proc.wait(300 * time.Millisecond) {
		t.Fatal("a paused VM was killed")
	}
}

// watchedChild stands a sleeping child in for QEMU: VM id adopts it and
// runs its event loop on q. The test's cleanup kills it.
func watchedChild(t *testing.T, q *qmp.Client, id string) *process {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &qemuVM{id: id, paths: pathsFor(t.TempDir()), log: testLogger(t)}
	proc := v.adoptChild(cmd)
	t.Cleanup(func() { proc.kill(); proc.wait(5 * time.Second) })
	v.startEventLoop(q, proc)
	return proc
}

// dialFake connects a QMP client to the fake server s.
func dialFake(t *testing.T, s *qmptest.Server) *qmp.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := qmp.Dial(ctx, s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}
