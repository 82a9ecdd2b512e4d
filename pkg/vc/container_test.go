package vc

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/persist"
)

func TestTransitions(t *testing.T) {
	allowed := map[[2]State]bool{
		{StateCreated, StateRunning}: true, {StateCreated, StateStopped}: true,
		{StateRunning, StatePaused}: true, {StateRunning, StateStopped}: true,
		{StatePaused, StateRunning}: true, {StatePaused, StateStopped}: true,
	}
	all := []State{StateCreated, StateRunning, StatePaused, StateStopped}
	for _, from := range all {
		for _, to := range all {
			want := from == to || allowed[[2]State{from, to}]
			if got := canMove(from, to); got != want {
				t.Errorf("canMove(%s, %s) = %v, want %v", from, to, got, want)
			}
		}
	}
}

// stoppedSandbox records a stopped sandbox with one container in state
// and fetches it: the sandbox has no agent connection.
func stoppedSandbox(t *testing.T, state State) *Sandbox {
	t.Helper()
	root := t.TempDir()
	store, err := persist.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create("sb"); err != nil {
		t.Fatal(err)
	}
	if err := store.Save("sb", sandboxKey, SandboxStatus{ID: "sb", State: StateStopped}); err != nil {
		t.Fatal(err)
	}
	if err := store.Save("sb", containerKey("c"), ContainerStatus{ID: "c", SandboxID: "sb", State: state, ExitCode: 3}); err != nil {
		t.Fatal(err)
	}
	s, err := FetchSandbox(context.Background(), root, "sb")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Every container operation on a fetched stopped sandbox answers an
// error (or, for those that need no guest, does its work) instead of
// dereferencing the missing agent connection.
func TestContainerOfStoppedSandbox(t *testing.T) {
	ctx := context.Background()
	s := stoppedSandbox(t, StateRunning)
	c := s.Container("c")
	failed := map[string]error{}
	_, failed["stats"] = c.Stats(ctx)
	failed["update"] = c.Update(ctx, nil)
	failed["pause"] = c.Pause(ctx)
	failed["exec"] = c.Exec(ctx, "e", nil)
	failed["signal"] = c.SignalProcess(ctx, "c", 9)
	failed["kill"] = c.Kill(ctx, 9, true)
	failed["close stdin"] = c.CloseStdin(ctx, "c")
	failed["resize"] = c.ResizeTerminal(ctx, "c", 24, 80)
	_, failed["wait"] = c.WaitProcess(ctx, "c")
	failed["iostream"] = <-c.IOStream(ctx, "c", IO{})
	_, failed["ps"] = c.ProcessList(ctx)
	for op, err := range failed {
		if err == nil {
			t.Errorf("%s on a stopped sandbox: no error", op)
		}
	}
	if _, err := s.StatsSandbox(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("StatsSandbox of a stopped sandbox: %v, want failed precondition", err)
	}
	// Stop records it stopped, keeping its exit code; then it can go.
	if err := c.Stop(ctx, 0); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.State != StateStopped || st.ExitCode != 3 {
		t.Fatalf("after stop: %+v %v", st, err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(ctx); !errdefs.IsNotFound(err) {
		t.Errorf("status of a deleted container: %v, want not found", err)
	}
}

// Operations in the wrong state name the operation and the state.
func TestContainerWrongState(t *testing.T) {
	ctx := context.Background()
	c := stoppedSandbox(t, StateStopped).Container("c")
	for op, err := range map[string]error{
		"start":  c.Start(ctx),
		"pause":  c.Pause(ctx),
		"resume": c.Resume(ctx),
	} {
		if !errdefs.IsFailedPrecondition(err) {
			t.Errorf("%s of a stopped container: %v, want failed precondition", op, err)
		} else if want := op + ": container c is stopped"; !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q does not say %q", op, err, want)
		}
	}
	running := stoppedSandbox(t, StateRunning).Container("c")
	if err := running.Delete(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a running container: %v, want failed precondition", err)
	}
	if err := c.Sandbox().Container("nope").Start(ctx); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("start of a missing container: %v, want not found", err)
	}
}
