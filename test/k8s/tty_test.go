package k8s

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// term is kubectl run under a pseudo-terminal of the test's (kubectl
// needs a terminal on its stdin for -t): what it prints is collected,
// what the test types goes to the terminal.
type term struct {
	t    *testing.T
	cmd  *exec.Cmd
	ptm  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{} // kubectl exited
}

func startTerm(t *testing.T, n *ns, rows, cols uint16, args ...string) *term {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := n.c.command(ctx, nil, append([]string{"-n", n.name}, args...)...)
	ptm, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		cancel()
		t.Fatalf("kubectl %v under a pty: %v", args, err)
	}
	tm := &term{t: t, cmd: cmd, ptm: ptm, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := ptm.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:k])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		cmd.Wait()
		close(tm.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-tm.done
		ptm.Close()
	})
	return tm
}

func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// expect waits until the output matches re and returns the submatches.
func (tm *term) expect(what string, re *regexp.Regexp, d time.Duration) []string {
	tm.t.Helper()
	deadline := time.Now().Add(d)
	for {
		if m := re.FindStringSubmatch(tm.output()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("%s: no %q in kubectl's terminal after %v; it shows:\n%q", what, re, d, tm.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (tm *term) typeIn(s string) {
	tm.t.Helper()
	if _, err := io.WriteString(tm.ptm, s); err != nil {
		tm.t.Fatalf("type %q: %v", s, err)
	}
}

// wait waits for kubectl to exit and returns its exit code.
func (tm *term) wait(d time.Duration) int {
	tm.t.Helper()
	select {
	case <-time.After(d):
		tm.t.Fatalf("kubectl did not exit within %v; its terminal:\n%q", d, tm.output())
	case <-tm.done:
	}
	return tm.cmd.ProcessState.ExitCode()
}

// TestExecTTY: kubectl exec -it gives the process a terminal (tty names a
// /dev/pts device, stdin is a tty), the size of kubectl's own terminal,
// and a later resize of it; output comes back with the terminal's CRLF,
// and the exit code is the process's.
func TestExecTTY(t *testing.T) {
	t.Parallel()
	forEachClass(t, "exectty", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, `  containers:
  - name: c
    image: `+image+`
    imagePullPolicy: Never
    command: ["sleep", "3600"]
`))
		n.waitReady("p")
		// The size reaches the process once kubectl sends it, which may be
		// after the process starts (under runc too): wait for it.
		script := `tty; [ -t 0 ] && echo stdin-is-a-tty; ` +
			`for i in $(seq 100); do s=$(stty size); [ "$s" = "37 111" ] && break; sleep 0.1; done; echo "size $s"; ` +
			`read line; for i in $(seq 100); do s=$(stty size); [ "$s" = "50 150" ] && break; sleep 0.1; done; echo "resized $s"; exit 7`
		tm := startTerm(t, n, 37, 111, "exec", "-it", "p", "--", "sh", "-c", script)
		m := tm.expect("tty's device", regexp.MustCompile(`(/dev/pts/\d+)\r\n`), 2*time.Minute)
		t.Logf("%s: exec -it: tty is %s", rc, m[1])
		tm.expect("stdin a tty", regexp.MustCompile(`stdin-is-a-tty\r\n`), time.Minute)
		if m := tm.expect("the initial size", regexp.MustCompile(`size (\d+ \d+)\r\n`), time.Minute); m[1] != "37 111" {
			t.Errorf("stty size %q, want kubectl's terminal's 37 111", m[1])
		}
		if err := pty.Setsize(tm.ptm, &pty.Winsize{Rows: 50, Cols: 150}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		tm.typeIn("go\r")
		if m := tm.expect("the size after a resize", regexp.MustCompile(`resized (\d+ \d+)\r\n`), time.Minute); m[1] != "50 150" {
			t.Errorf("stty size after the resize %q, want 50 150", m[1])
		}
		if code := tm.wait(time.Minute); code != 7 {
			t.Errorf("kubectl exec -it exited %d, want the process's 7", code)
		}
	})
}

// TestAttach: kubectl attach -it to a container with stdin and tty: what
// is typed reaches its shell, whose answer comes back over the terminal;
// kubectl attach -i to a container with stdin and no tty: lines in, its
// output back. Detaching leaves the container running.
func TestAttach(t *testing.T) {
	t.Parallel()
	forEachClass(t, "attach", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, `  containers:
  - name: tty
    image: `+image+`
    imagePullPolicy: Never
    command: ["sh"]
    stdin: true
    tty: true
  - name: notty
    image: `+image+`
    imagePullPolicy: Never
    command: ["sh", "-c", "while read l; do echo \"got $l\"; done; echo stdin-closed; exec sleep 3600"]
    stdin: true
`))
		n.waitReady("p")

		tm := startTerm(t, n, 30, 100, "attach", "-it", "p", "-c", "tty")
		// kubectl attaches, then asks to press enter for a prompt: type a
		// command until its answer shows (what was typed before the
		// attach is lost).
		re := regexp.MustCompile(`answer-(\d+)\r\n`)
		deadline := time.Now().Add(2 * time.Minute)
		for re.FindString(tm.output()) == "" {
			if time.Now().After(deadline) {
				t.Fatalf("attach -it: no answer from the shell; the terminal:\n%q", tm.output())
			}
			tm.typeIn("echo answer-$((6*7))\r")
			time.Sleep(2 * time.Second)
		}
		if m := re.FindStringSubmatch(tm.output()); m[1] != "42" {
			t.Errorf("attach -it: answer-%s, want answer-42", m[1])
		}
		tm.typeIn("tty; stty size\r")
		tm.expect("the attached shell's tty", regexp.MustCompile(`/dev/pts/\d+\r\n`), time.Minute)
		// kubectl attach has no detach keys: ending kubectl detaches, and
		// leaves the shell running (asserted below).
		tm.cmd.Process.Kill()
		tm.wait(time.Minute)

		// No tty: lines in, lines out.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := n.c.command(ctx, nil, "-n", n.name, "attach", "-i", "p", "-c", "notty")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out safeBuffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		deadline = time.Now().Add(2 * time.Minute)
		for i := 0; !strings.Contains(out.String(), "got hello"); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("attach -i: no echo of the lines sent; kubectl printed:\n%q", out.String())
			}
			io.WriteString(in, "hello\n")
			time.Sleep(2 * time.Second)
		}
		io.WriteString(in, "second line\n")
		n.waitFor("the second line echoed", time.Minute, func() bool { return strings.Contains(out.String(), "got second line") })
		cancel()
		cmd.Wait()

		for _, c := range n.pod("p").ContainerStatuses {
			if c.State.Running == nil || c.RestartCount != 0 {
				t.Errorf("container %s after the attaches: running %v, restarts %d; want running, 0", c.Name, c.State.Running != nil, c.RestartCount)
			}
		}
		if logs := n.k("logs", "p", "-c", "notty"); !strings.Contains(logs, "got hello\n") || !strings.Contains(logs, "got second line\n") {
			t.Errorf("the notty container's log %q lacks the lines attached", logs)
		}
	})
}

// safeBuffer is a bytes.Buffer a command writes while the test reads it.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
