package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestExec runs processes in a running container, with and without a
// terminal.
func TestExec(t *testing.T) {
	e := newEnv(t)
	id := newID("exec")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	cases := []struct {
		name     string
		terminal bool
		script   string
		stdout   string // wanted substring
		stderr   string // wanted exactly (no terminal)
	}{
		{"plain", false, "echo to-out; echo to-err >&2; tty || true", "to-out\nnot a tty\n", "to-err\n"},
		// A terminal: stderr goes to it too, and output lines end in \r\n.
		{"terminal", true, "echo to-out; echo to-err >&2; tty", "to-out\r\nto-err\r\n/dev/pts/0\r\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.exec(id, c.name, c.terminal, "sh", "-c", c.script)
			out := e.readAll(id, c.name, false)
			if !strings.Contains(out, c.stdout) {
				t.Errorf("stdout %q does not contain %q", out, c.stdout)
			}
			if got := e.readAll(id, c.name, true); got != c.stderr {
				t.Errorf("stderr %q, want %q", got, c.stderr)
			}
			if st := e.wait(id, c.name); st != 0 {
				t.Errorf("status %d", st)
			}
		})
	}

	t.Run("winsize", func(t *testing.T) {
		e.exec(id, "winsize", true, "sh", "-c", "read line; stty size")
		_, err := e.a.Svc.TtyWinResize(e.ctx(10*time.Second), &pb.TtyWinResizeRequest{ContainerId: id, ExecId: "winsize", Row: 33, Column: 101})
		if err != nil {
			t.Fatalf("resize: %v", err)
		}
		if _, err := e.a.Svc.WriteStdin(e.ctx(10*time.Second), &pb.WriteStreamRequest{ContainerId: id, ExecId: "winsize", Data: []byte("go\n")}); err != nil {
			t.Fatalf("write stdin: %v", err)
		}
		if out := e.readAll(id, "winsize", false); !strings.Contains(out, "33 101") {
			t.Errorf("stty size printed %q, want 33 101", out)
		}
		e.wait(id, "winsize")
		_, err = e.a.Svc.TtyWinResize(e.ctx(10*time.Second), &pb.TtyWinResizeRequest{ContainerId: id, ExecId: "plain-resize", Row: 1, Column: 1})
		wantCode(t, "resize of unknown exec", err, codes.NotFound, "exec_id")
	})

	t.Run("exec-id-freed", func(t *testing.T) {
		// Once waited for and read to the end, an exec id can be used again.
		for i := 0; i < 2; i++ {
			e.exec(id, "again", false, "true")
			e.readAll(id, "again", false)
			e.readAll(id, "again", true)
			if st := e.wait(id, "again"); st != 0 {
				t.Fatalf("run %d: status %d", i, st)
			}
		}
	})
}

// TestStdin round-trips data through cat, with and without a terminal.
func TestStdin(t *testing.T) {
	e := newEnv(t)
	id := newID("stdin")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	data := strings.Repeat("0123456789abcdef", 8<<10) + "\n" // 128 KiB + 1
	for _, terminal := range []bool{false, true} {
		name := "pipe"
		if terminal {
			name = "terminal"
		}
		t.Run(name, func(t *testing.T) {
			if terminal {
				// A terminal line is limited (4 KiB in canonical mode) and
				// echoed: send short lines, raw mode off.
				e.exec(id, name, true, "sh", "-c", "stty -echo; echo ready; cat")
				e.readUntil(id, name, "ready")
				for _, line := range []string{"hello\n", "world\n"} {
					if _, err := e.a.Svc.WriteStdin(e.ctx(10*time.Second), &pb.WriteStreamRequest{ContainerId: id, ExecId: name, Data: []byte(line)}); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := e.a.Svc.CloseStdin(e.ctx(10*time.Second), &pb.CloseStdinRequest{ContainerId: id, ExecId: name}); err != nil {
					t.Fatal(err)
				}
				if out := e.readAll(id, name, false); out != "hello\r\nworld\r\n" {
					t.Errorf("terminal cat printed %q", out)
				}
			} else {
				e.exec(id, name, false, "cat")
				// Write while reading: cat's output must be drained for
				// it to keep reading.
				done := make(chan string)
				go func() { done <- e.readAll(id, name, false) }()
				for off := 0; off < len(data); {
					end := min(off+10000, len(data))
					r, err := e.a.Svc.WriteStdin(e.ctx(10*time.Second), &pb.WriteStreamRequest{ContainerId: id, ExecId: name, Data: []byte(data[off:end])})
					if err != nil {
						t.Fatal(err)
					}
					off += int(r.Len)
				}
				if _, err := e.a.Svc.CloseStdin(e.ctx(10*time.Second), &pb.CloseStdinRequest{ContainerId: id, ExecId: name}); err != nil {
					t.Fatal(err)
				}
				if out := <-done; out != data {
					t.Errorf("cat returned %d bytes, want the %d written", len(out), len(data))
				}
				_, err := e.a.Svc.WriteStdin(e.ctx(10*time.Second), &pb.WriteStreamRequest{ContainerId: id, ExecId: name, Data: []byte("late")})
				wantCode(t, "write after close", err, codes.FailedPrecondition, "stdin")
			}
			if st := e.wait(id, name); st != 0 {
				t.Errorf("status %d", st)
			}
		})
	}
}

// TestStdinBlocked: a write to a process that does not read its input
// gives up when the request's context ends.
func TestStdinBlocked(t *testing.T) {
	e := newEnv(t)
	id := newID("stdinblock")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	start := time.Now()
	_, err := e.a.Svc.WriteStdin(e.ctx(500*time.Millisecond), &pb.WriteStreamRequest{ContainerId: id, Data: make([]byte, 2<<20)})
	if !isTimeout(err) {
		t.Fatalf("write of 2 MiB (more than its 1 MiB pipe) to a process that does not read: %v, want a timeout", err)
	}
	// The agent is not stuck: the next write times out too, and other
	// calls answer.
	_, err = e.a.Svc.WriteStdin(e.ctx(500*time.Millisecond), &pb.WriteStreamRequest{ContainerId: id, Data: make([]byte, 2<<20)})
	if !isTimeout(err) {
		t.Fatalf("second write: %v, want a timeout", err)
	}
	if _, err := e.a.Svc.CloseStdin(e.ctx(5*time.Second), &pb.CloseStdinRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	// Answered at once (writes are serialized: the earlier ones ended).
	_, err = e.a.Svc.WriteStdin(e.ctx(5*time.Second), &pb.WriteStreamRequest{ContainerId: id, Data: []byte("x")})
	wantCode(t, "write after close", err, codes.FailedPrecondition, "stdin")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestSignals delivers signals to a container's processes.
func TestSignals(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	const script = `trap 'echo got USR1; exit 4' USR1; echo ready; while true; do sleep 0.1; done`
	cases := []struct {
		name   string
		execID func(id string) string // "" signals every process
	}{
		{"all-processes", func(string) string { return "" }},
		{"init-by-exec-id", func(id string) string { return id }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := newID("sig")
			e.run(id, spec(rootfs, "sh", "-c", script))
			e.readUntil(id, "", "ready")
			e.signal(id, c.execID(id), 10) // SIGUSR1
			if out := e.readUntil(id, "", "got USR1"); !strings.Contains(out, "got USR1") {
				t.Errorf("output %q", out)
			}
			if st := e.wait(id, ""); st != 4 {
				t.Errorf("status %d, want 4 (the trap's)", st)
			}
			// Signalling a finished container: NotFound.
			_, err := e.a.Svc.SignalProcess(e.ctx(10*time.Second), &pb.SignalProcessRequest{ContainerId: id, Signal: 15})
			wantCode(t, "signal after exit", err, codes.NotFound, "")
		})
	}

	t.Run("exec", func(t *testing.T) {
		id := newID("sigexec")
		e.run(id, spec(rootfs, "sleep", "1000"))
		e.exec(id, "trapper", false, "sh", "-c", script)
		e.readUntil(id, "trapper", "ready")
		e.signal(id, "trapper", 10)
		e.readUntil(id, "trapper", "got USR1")
		if st := e.wait(id, "trapper"); st != 4 {
			t.Errorf("status %d, want 4", st)
		}
		// The init was not touched.
		e.exec(id, "alive", false, "true")
		if st := e.wait(id, "alive"); st != 0 {
			t.Errorf("exec after signal: status %d", st)
		}
	})
}

// TestConcurrentExecs starts many short processes at once: each gets its
// own output and exit status.
func TestConcurrentExecs(t *testing.T) {
	e := newEnv(t)
	id := newID("many")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	const n = 16
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			execID := fmt.Sprintf("p%d", i)
			_, err := e.a.Svc.ExecProcess(e.ctx(30*time.Second), &pb.ExecProcessRequest{
				ContainerId: id, ExecId: execID,
				Process: &pb.Process{Args: []string{"sh", "-c", fmt.Sprintf("echo %s; exit %d", execID, i)}, Env: []string{pathEnv}, Cwd: "/"},
			})
			if err != nil {
				errs <- err
				return
			}
			r, err := e.a.Svc.WaitProcess(e.ctx(30*time.Second), &pb.WaitProcessRequest{ContainerId: id, ExecId: execID})
			if err != nil {
				errs <- err
				return
			}
			out, err := e.a.Svc.ReadStdout(e.ctx(30*time.Second), &pb.ReadStreamRequest{ContainerId: id, ExecId: execID, Len: 100})
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: read: %w", execID, err)
			case r.Status != int32(i) || string(out.Data) != execID+"\n":
				errs <- fmt.Errorf("%s: status %d, output %q", execID, r.Status, out.Data)
			default:
				errs <- nil
			}
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
