package container

import (
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseSigMasks(t *testing.T) {
	status := "Name:\tsh\nSigQ:\t0/7823\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n" +
		"SigBlk:\t0000000000010000\nSigIgn:\t0000000000000004\nSigCgt:\t0000000000004002\nCapInh:\t0000000000000000\n"
	m, err := parseSigMasks([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if m != (sigMasks{blocked: 0x10000, ignored: 4, caught: 0x4002}) {
		t.Fatalf("masks %+v", m)
	}
	for sig, drops := range map[unix.Signal]bool{
		unix.SIGHUP:  true,  // 1: neither
		unix.SIGINT:  false, // 2: caught
		unix.SIGQUIT: false, // 3: ignored
		unix.SIGTERM: false, // 15: caught
		unix.SIGCHLD: false, // 17: blocked
		unix.SIGUSR1: true,
		unix.SIGKILL: false,
		unix.SIGSTOP: false,
	} {
		if got := m.drops(sig); got != drops {
			t.Errorf("drops(%v) = %v, want %v", sig, got, drops)
		}
	}
	if _, err := parseSigMasks([]byte("Name:\tsh\nSigBlk:\t0\n")); err == nil {
		t.Error("a status without SigIgn and SigCgt parsed")
	}
	if _, err := parseSigMasks([]byte("SigBlk:\tzz\nSigIgn:\t0\nSigCgt:\t0\n")); err == nil {
		t.Error("a bad SigBlk parsed")
	}
}

// An init that still executes what it executed when released
// (libcontainer's init) has not settled, even while it catches the signal
// and sleeps; once it executed another program that set its trap and
// sleeps, it has.
func TestSettledAfterExec(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	cmd := exec.Command("/bin/sh", "-c", "trap : USR1; sleep 0.5; exec "+bash+" -c 'trap : USR1; sleep 5 & wait'")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer unix.Kill(-cmd.Process.Pid, unix.SIGKILL) // and its sleep
	pid := cmd.Process.Pid
	before, err := exeOf(pid)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// In its first sleep, trap set: settled by its masks and state
	// alone, not while it executes what it did when released.
	for deadline := start.Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := settled(pid, unix.SIGUSR1, fileID{}, false); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell never caught USR1 and slept")
		}
	}
	if ok, err := settled(pid, unix.SIGUSR1, before, true); ok || err != nil {
		t.Fatalf("settled before its exec: %v, %v", ok, err)
	}
	for deadline := start.Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := settled(pid, unix.SIGUSR1, before, true); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not settled after its exec")
		}
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("settled after %v, before its exec at 0.5 s", d)
	}
}

// A held signal is sent once the process has settled, as killsig's
// shell: it sets its trap late, works a while, then waits. Sent before the
// trap, the default action would kill it; sent between the trap and the
// wait, the trap runs and the wait lasts its 10 s.
func TestSignalWhenSettled(t *testing.T) {
	// Output to a file: a pipe would stay open as long as the sleep.
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("/bin/sh", "-c", `sleep 0.3; trap 'echo caught' USR1; i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 10 & wait $!; exit 3`)
	cmd.Stdout = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer unix.Kill(-cmd.Process.Pid, unix.SIGKILL) // and its sleep
	p := newProc(&Container{log: slog.Default()}, "init", true)
	p.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		close(p.done)
		exited <- err
	}()
	if ok, err := settled(p.pid, unix.SIGUSR1, fileID{}, false); err != nil || ok {
		t.Fatalf("settled before its trap: %v, %v", ok, err)
	}
	start := time.Now()
	go p.signalWhenSettled(unix.SIGUSR1, time.Now().Add(time.Minute), fileID{}, false)
	select {
	case err := <-exited:
		b, _ := os.ReadFile(out.Name())
		if cmd.ProcessState.ExitCode() != 3 || !strings.Contains(string(b), "caught") {
			t.Fatalf("shell: %v, exit %d, output %q; want the trap's output and exit 3", err, cmd.ProcessState.ExitCode(), b)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("the shell ended after %v: the signal came before its wait", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the held signal did not come")
	}
}

// Past its deadline a held signal is sent as it is.
func TestSignalWhenSettledDeadline(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	p := newProc(&Container{log: slog.Default()}, "init", true)
	p.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(p.done)
		close(exited)
	}()
	start := time.Now()
	go p.signalWhenSettled(unix.SIGUSR1, start.Add(300*time.Millisecond), fileID{}, false)
	select {
	case <-exited:
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("signalled after %v, before the deadline", d)
		}
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != unix.SIGUSR1 {
			t.Errorf("sleep ended with %v, want killed by SIGUSR1", cmd.ProcessState)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the signal was never sent")
	}
}
