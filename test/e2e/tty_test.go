package e2e

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// vcTTY starts vc under a pseudo-terminal of the given size and returns
// the command and the terminal's master side.
func vcTTY(t *testing.T, rows, cols uint16, args ...string) (*exec.Cmd, io.ReadWriter) {
	t.Helper()
	cmd := exec.Command(vcBin, append([]string{"--state-root", stateRoot, "--data-root", dataRoot}, args...)...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); f.Close() })
	return cmd, f
}

// expect reads from r until want is seen, failing after a while.
func expect(t *testing.T, r *bufio.Reader, want string) string {
	t.Helper()
	var seen strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !strings.Contains(seen.String(), want) {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			seen.WriteByte(b)
		}
	}()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("did not see %q; output so far: %q", want, seen.String())
	}
	if !strings.Contains(seen.String(), want) {
		t.Fatalf("output ended before %q: %q", want, seen.String())
	}
	return seen.String()
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	select {
	case <-ch:
	case <-time.After(60 * time.Second):
		t.Fatal("vc did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

// -t gives the container a real terminal of the caller's size, and Ctrl-C
// typed on it interrupts the container's foreground process: with -i as a
// byte through the terminal, without as a signal vc forwards.
func TestRunTTY(t *testing.T) {
	for _, flags := range [][]string{{"-i", "-t"}, {"-t"}} {
		t.Run(strings.Join(flags, ""), func(t *testing.T) { testRunTTY(t, flags) })
	}
}

func testRunTTY(t *testing.T, flags []string) {
	args := append(append([]string{"run", "--rm"}, flags...), "--name", "e2e-tty", "busybox", "--",
		"sh", "-c", `stty size; tty; trap 'echo got-INT; exit 130' INT; echo ready; while true; do sleep 1; done`)
	cmd, term := vcTTY(t, 31, 97, args...)
	r := bufio.NewReader(term)
	out := expect(t, r, "ready")
	if !strings.Contains(out, "31 97") {
		t.Errorf("stty size in the container: want 31 97 in %q", out)
	}
	if !strings.Contains(out, "/dev/pts/") {
		t.Errorf("tty in the container: want /dev/pts/N in %q", out)
	}
	term.Write([]byte{3}) // Ctrl-C
	expect(t, r, "got-INT")
	if code := waitExit(t, cmd); code != 130 {
		t.Fatalf("exit code %d, want 130", code)
	}
	noLeftovers(t, "e2e-tty")
}

// Without a terminal, a signal sent to vc run reaches the container, as
// with docker's signal proxy.
func TestRunForwardsSignals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vcBin, "--state-root", stateRoot, "--data-root", dataRoot, "run", "--rm", "--name", "e2e-sig", "busybox", "--",
		"sh", "-c", `trap 'echo got-TERM; exit 143' TERM; echo ready; while true; do sleep 1; done`)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut syncBuffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(out)
	expect(t, r, "ready")
	cmd.Process.Signal(syscall.SIGTERM)
	expect(t, r, "got-TERM")
	if code := waitExit(t, cmd); code != 143 {
		t.Fatalf("exit code %d, want 143", code)
	}
	// Nothing else: a stray ttRPC "inactive stream" error was printed.
	if errOut.String() != "" {
		t.Errorf("stderr %q, want nothing", errOut.String())
	}
	noLeftovers(t, "e2e-sig")
}
