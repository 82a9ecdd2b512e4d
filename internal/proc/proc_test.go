package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestStartTimeAndRunning(t *testing.T) {
	a, err := StartTime(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("StartTime(self) = %d, %v", a, err)
	}
	if !Running(os.Getpid(), a) || !Running(os.Getpid(), 0) {
		t.Error("this process is not running")
	}
	if Running(os.Getpid(), a+1) {
		t.Error("a different start time is taken for this process")
	}
	if _, err := StartTime(1 << 30); err == nil || Running(1<<30, 0) {
		t.Error("a pid that does not exist")
	}
	// A zombie is not running.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		if st, _, _ := stat(cmd.Process.Pid); st == "Z" {
			break
		}
		exec.Command("true").Run()
	}
	if Running(cmd.Process.Pid, 0) {
		t.Error("a zombie is taken for running")
	}
	cmd.Wait()
}

func TestFind(t *testing.T) {
	// The marker is the shell's $0. The shell waits in its builtin read, so
	// no child of it (a fork that has not exec'd yet shares the command
	// line) can be found too.
	cmd := exec.Command("sh", "-c", "read x", "proc-find-marker")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
	// Until the child has exec'd the shell it has this test's command line.
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		pids = Find(func(args []string) bool { return len(args) == 4 && args[3] == "proc-find-marker" })
		if len(pids) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("Find = %v, want [%d]", pids, cmd.Process.Pid)
	}
}
