package e2e

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

// A vc container's owner serves pkg/vc/owner's control protocol on
// control.sock: state follows the container (created, then running once
// vc start started it through the library), kill reaches its process,
// and an owner whose created container is killed before it starts is
// done: its VM stops.
func TestOwnerControl(t *testing.T) {
	id := "e2e-ownerctl"
	if out, errOut, code := vcRun(t, nil, "create", "--name", id, "busybox", "--", "sleep", "1000"); code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("create: exit %d stdout %q stderr %q", code, out, errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	sock := filepath.Join(stateRoot, id, "control.sock")
	state := func() string {
		t.Helper()
		rep, err := vcowner.Call(sock, vcowner.Request{Op: vcowner.OpState})
		if err != nil || rep.State == nil {
			t.Fatalf("state: %+v, %v", rep, err)
		}
		if rep.State.ID != id {
			t.Errorf("state of %q, want %q", rep.State.ID, id)
		}
		return rep.State.Status
	}
	if st := state(); st != vcowner.StatusCreated {
		t.Errorf("after create: %s, want created", st)
	}
	if _, errOut, code := vcRun(t, nil, "start", id); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	if st := state(); st != vcowner.StatusRunning {
		t.Errorf("after vc start: %s, want running", st)
	}
	if _, err := vcowner.Call(sock, vcowner.Request{Op: "nonsense"}); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("an unknown op: %v, want an error naming it", err)
	}
	if _, err := vcowner.Call(sock, vcowner.Request{Op: vcowner.OpKill, Signal: int(unix.SIGKILL)}); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if out, errOut, code := vcRun(t, nil, "wait", id); code != 0 || strings.TrimSpace(out) != "137" {
		t.Fatalf("wait after kill: exit %d stdout %q stderr %q, want 137", code, out, errOut)
	}

	// Killed before it starts.
	id2 := "e2e-ownerctl2"
	if _, errOut, code := vcRun(t, nil, "create", "--name", id2, "busybox", "--", "true"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id2) })
	sock2 := filepath.Join(stateRoot, id2, "control.sock")
	if _, err := vcowner.Call(sock2, vcowner.Request{Op: vcowner.OpKill, Signal: int(unix.SIGTERM)}); err != nil {
		t.Fatalf("kill before start: %v", err)
	}
	// The owner is done: its VM stops, its socket goes.
	if _, errOut, code := vcRun(t, nil, "wait", id2); code != 0 {
		t.Fatalf("wait after a kill before start: exit %d: %s", code, errOut)
	}
	waitFor(t, func() bool {
		_, err := vcowner.Call(sock2, vcowner.Request{Op: vcowner.OpState})
		return errors.Is(err, vcowner.ErrNoOwner)
	}, "the owner of the container killed before start gone")
	if _, errOut, code := vcRun(t, nil, "rm", id2); code != 0 {
		t.Fatalf("rm: %s", errOut)
	}
	noLeftovers(t, id2)
}
