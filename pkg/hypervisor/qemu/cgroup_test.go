package qemu

import (
	"errors"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// fakePlacer records the threads its hooks ran on.
type fakePlacer struct {
	err, enterErr            error
	enterCalled, leaveCalled bool
	enterTid, leaveTid       int
	pidAtLeave               int
}

func (f *fakePlacer) Prepare(cmd *exec.Cmd) (func() error, func(), error) {
	if f.err != nil {
		return nil, nil, f.err
	}
	enter := func() error {
		f.enterCalled, f.enterTid = true, unix.Gettid()
		return f.enterErr
	}
	leave := func() {
		f.leaveCalled, f.leaveTid = true, unix.Gettid()
		if cmd.Process != nil {
			f.pidAtLeave = cmd.Process.Pid
		}
	}
	return enter, leave, nil
}

// The placer's enter runs on the thread that forks, before the fork, and
// its leave on the same thread after it; a failing Prepare or enter
// starts nothing.
func TestStartCmdInCgroup(t *testing.T) {
	for _, dieWithParent := range []bool{false, true} {
		f := &fakePlacer{}
		cmd := exec.Command("true")
		release := make(chan struct{})
		if err := startCmdIn(cmd, f, dieWithParent, release, nil); err != nil {
			t.Fatal(err)
		}
		close(release)
		cmd.Wait()
		if !f.enterCalled || !f.leaveCalled || f.enterTid != f.leaveTid || f.enterTid == 0 {
			t.Errorf("dieWithParent %v: enter on %d (%v), leave on %d (%v): want both, on one thread", dieWithParent, f.enterTid, f.enterCalled, f.leaveTid, f.leaveCalled)
		}
		if f.pidAtLeave != cmd.Process.Pid {
			t.Errorf("dieWithParent %v: leave ran before the fork (pid %d, want %d)", dieWithParent, f.pidAtLeave, cmd.Process.Pid)
		}
	}

	boom := errors.New("boom")
	f := &fakePlacer{err: boom}
	cmd := exec.Command("true")
	if err := startCmdIn(cmd, f, false, nil, nil); !errors.Is(err, boom) || cmd.Process != nil {
		t.Errorf("a failing Prepare: %v, process %v; want boom and none", err, cmd.Process)
	}
	f = &fakePlacer{enterErr: boom}
	cmd = exec.Command("true")
	if err := startCmdIn(cmd, f, false, nil, nil); !errors.Is(err, boom) || cmd.Process != nil {
		t.Errorf("a failing enter: %v, process %v; want boom and none", err, cmd.Process)
	}
}
