package agent_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// helperProc is an exec'd process as `vc exec` and containerd send it:
// the container's own settings (no_new_privs as the spec's), so the
// container's exec helper may start it.
func helperProc(terminal bool, args ...string) *pb.Process {
	return &pb.Process{Args: args, Env: []string{pathEnv, "TERM=dumb"}, Cwd: "/", Terminal: terminal, User: &pb.User{}, NoNewPrivileges: true}
}

func (e *env) execProc(id, execID string, p *pb.Process) error {
	_, err := e.a.Svc.ExecProcess(e.ctx(30*time.Second), &pb.ExecProcessRequest{ContainerId: id, ExecId: execID, Process: p})
	return err
}

// byHelper tells whether the agent logged that the exec helper started
// execID.
func (e *env) byHelper(execID string) bool {
	// The log is copied from the agent's output asynchronously: the
	// line may come a little after the RPC's answer.
	for range 50 {
		if e.loggedByHelper(execID) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (e *env) loggedByHelper(execID string) bool {
	for line := range strings.Lines(e.a.Logs()) {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "process started by the exec helper") && (strings.Contains(line, " exec_id="+execID+" ") || strings.HasSuffix(line, " exec_id="+execID)) {
			return true
		}
	}
	return false
}

// helperPids lists the pids (in the container) of processes named
// vc-exec-helper, as a process of the container sees them.
const helperPids = `for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = vc-exec-helper ] && echo ${p#/proc/}; done; true`

// parity prints what libcontainer's exec sets up for a process: a
// process started by the helper must print the same.
const parity = `id; echo "HOME=$HOME"; pwd; env | sort; ulimit -a; cat /proc/self/oom_score_adj; cat /proc/self/cgroup;
grep -E '^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp)' /proc/self/status;
read -r pid comm state ppid pgrp session rest < /proc/self/stat; [ "$session" = "$$" ] && echo session-leader;
for fd in 0 1 2; do readlink /proc/self/fd/$fd | cut -d: -f1; done; ls -ld /proc/self/fd/1 | cut -c1-10; echo done >/dev/stderr`

// TestExecHelper: execs that need nothing but the container's own
// settings are forked by the container's exec helper, with the same
// results as libcontainer's exec (output, status, signals, terminal,
// stdin, environment, the missing command's error); an exec asking for
// something else, and every exec once the helper was killed from inside
// the container, take libcontainer's path.
func TestExecHelper(t *testing.T) {
	e := newEnv(t)
	id := newID("helper")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))

	// out runs p to the end and returns its stdout, stderr and status.
	out := func(execID string, p *pb.Process) (string, string, int32) {
		t.Helper()
		if err := e.execProc(id, execID, p); err != nil {
			t.Fatalf("exec %s: %v", execID, err)
		}
		o := e.readAll(id, execID, false)
		var se string
		if !p.Terminal {
			se = e.readAll(id, execID, true)
		}
		return o, se, e.wait(id, execID)
	}
	fast := func(execID string) {
		t.Helper()
		if !e.byHelper(execID) {
			t.Errorf("%s was not started by the exec helper", execID)
		}
	}

	// The first exec starts the helper in the background and takes
	// libcontainer's path itself.
	if _, _, st := out("first", helperProc(false, "true")); st != 0 {
		t.Fatalf("first exec: status %d", st)
	}
	if e.loggedByHelper("first") {
		t.Errorf("the first exec was started by a helper that was not started yet")
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(e.a.Logs(), "exec helper started"); {
		if time.Now().After(deadline) {
			t.Fatal("the exec helper did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	o, se, st := out("plain", helperProc(false, "sh", "-c", "echo to-out; echo to-err >&2; tty || true; exit 7"))
	fast("plain")
	if o != "to-out\nnot a tty\n" || se != "to-err\n" || st != 7 {
		t.Errorf("plain: stdout %q, stderr %q, status %d; want to-out/not a tty, to-err, 7", o, se, st)
	}
	o, _, _ = out("visible", helperProc(false, "sh", "-c", helperPids))
	fast("visible")
	if strings.TrimSpace(o) == "" {
		t.Fatalf("no vc-exec-helper process in the container")
	}
	helperPid := strings.Fields(o)[0]
	if o, _, _ := out("args", helperProc(false, "cat", "/proc/"+helperPid+"/cmdline")); o != "vc-exec-helper\x00" {
		t.Errorf("the helper's command line is %q, want vc-exec-helper", o)
	}

	o, _, st = out("terminal", helperProc(true, "sh", "-c", "echo to-out; echo to-err >&2; tty"))
	fast("terminal")
	if !strings.Contains(o, "to-out\r\nto-err\r\n/dev/pts/") || st != 0 {
		t.Errorf("terminal: output %q, status %d", o, st)
	}

	t.Run("winsize", func(t *testing.T) {
		p := helperProc(true, "sh", "-c", "stty size; read line; stty size")
		p.ConsoleSize = &pb.Box{Height: 21, Width: 77}
		if err := e.execProc(id, "winsize", p); err != nil {
			t.Fatal(err)
		}
		fast("winsize")
		e.readUntil(id, "winsize", "21 77")
		if _, err := e.a.Svc.TtyWinResize(e.ctx(10*time.Second), &pb.TtyWinResizeRequest{ContainerId: id, ExecId: "winsize", Row: 33, Column: 101}); err != nil {
			t.Fatalf("resize: %v", err)
		}
		if _, err := e.a.Svc.WriteStdin(e.ctx(10*time.Second), &pb.WriteStreamRequest{ContainerId: id, ExecId: "winsize", Data: []byte("go\n")}); err != nil {
			t.Fatal(err)
		}
		if o := e.readAll(id, "winsize", false); !strings.Contains(o, "33 101") {
			t.Errorf("stty size printed %q, want 33 101", o)
		}
		e.wait(id, "winsize")
	})

	t.Run("stdin", func(t *testing.T) {
		if err := e.execProc(id, "cat", helperProc(false, "cat")); err != nil {
			t.Fatal(err)
		}
		fast("cat")
		data := strings.Repeat("0123456789abcdef", 8<<10)
		done := make(chan string)
		go func() { done <- e.readAll(id, "cat", false) }()
		for off := 0; off < len(data); {
			r, err := e.a.Svc.WriteStdin(e.ctx(10*time.Second), &pb.WriteStreamRequest{ContainerId: id, ExecId: "cat", Data: []byte(data[off:min(off+10000, len(data))])})
			if err != nil {
				t.Fatal(err)
			}
			off += int(r.Len)
		}
		if _, err := e.a.Svc.CloseStdin(e.ctx(10*time.Second), &pb.CloseStdinRequest{ContainerId: id, ExecId: "cat"}); err != nil {
			t.Fatal(err)
		}
		if o := <-done; o != data {
			t.Errorf("cat returned %d bytes, want the %d written", len(o), len(data))
		}
		if st := e.wait(id, "cat"); st != 0 {
			t.Errorf("cat: status %d", st)
		}
	})

	t.Run("signals", func(t *testing.T) {
		for _, c := range []struct {
			sig  uint32
			want int32
		}{{9, 137}, {15, 143}} {
			execID := fmt.Sprintf("sleep-%d", c.sig)
			if err := e.execProc(id, execID, helperProc(false, "sleep", "1000")); err != nil {
				t.Fatal(err)
			}
			fast(execID)
			e.signal(id, execID, c.sig)
			if st := e.wait(id, execID); st != c.want {
				t.Errorf("signal %d: status %d, want %d", c.sig, st, c.want)
			}
		}
	})

	// missing runs the commands libcontainer's init refuses and returns
	// the errors' texts.
	missing := func(prefix string) []string {
		t.Helper()
		var texts []string
		for i, c := range []struct {
			args []string
			code codes.Code
			want error
		}{
			{[]string{"/no/such"}, codes.NotFound, pb.ErrCommandNotFound},
			{[]string{"nosuchcommand"}, codes.NotFound, pb.ErrCommandNotFound},
			{[]string{"/etc"}, codes.PermissionDenied, pb.ErrCommandNotRunnable},
			{[]string{"/dev/shm/bb"}, codes.PermissionDenied, pb.ErrCommandNotRunnable},
		} {
			err := e.execProc(id, fmt.Sprintf("%s-missing%d", prefix, i), helperProc(false, c.args...))
			wantCode(t, fmt.Sprintf("%s exec %q", prefix, c.args), err, c.code, "exec_id")
			if err != nil {
				if !errors.Is(pb.ToNative(err), c.want) {
					t.Errorf("%s exec %q: %v, not typed %v", prefix, c.args, err, c.want)
				}
				texts = append(texts, err.Error())
			}
		}
		return texts
	}
	// A file executable by its mode on a noexec mount: the access check
	// refuses it.
	if _, se, st := out("noexec", helperProc(false, "sh", "-c", "cp /bin/busybox /dev/shm/bb && chmod 755 /dev/shm/bb")); st != 0 {
		t.Fatalf("copy to /dev/shm: %d %s", st, se)
	}
	fastErrs := missing("fast")

	// The same process through both paths: the helper now, then
	// libcontainer's exec once the helper is gone.
	parityProc := func() *pb.Process {
		p := helperProc(false, "sh", "-c", parity)
		p.Env = []string{pathEnv, "FOO=1", "FOO=2"}
		p.Cwd = "/etc"
		return p
	}
	fastOut, fastErr, _ := out("parity-fast", parityProc())
	fast("parity-fast")
	if !strings.Contains(fastOut, "FOO=2\n") || strings.Contains(fastOut, "FOO=1") || !strings.Contains(fastOut, "/etc\n") ||
		!strings.Contains(fastOut, "session-leader") || !strings.Contains(fastOut, "HOME=/root\n") || fastErr != "done\n" {
		t.Errorf("fast path's process: stdout\n%s\nstderr %q", fastOut, fastErr)
	}

	// HOME comes from /etc/passwd when the process has none; the helper
	// sees the file change.
	home := func(execID string) string {
		p := helperProc(false, "sh", "-c", `echo "$HOME"`)
		p.Env = []string{pathEnv}
		o, _, _ := out(execID, p)
		fast(execID)
		return strings.TrimSpace(o)
	}
	for i, h := range []string{"/newhome", "/root"} {
		other := map[string]string{"/newhome": "/root", "/root": "/newhome"}[h]
		out(fmt.Sprintf("edit%d", i), helperProc(false, "sed", "-i", "s#:"+other+":#:"+h+":#", "/etc/passwd"))
		if got := home(fmt.Sprintf("home%d", i)); got != h {
			t.Errorf("after /etc/passwd's change, HOME is %q, want %q", got, h)
		}
	}

	// The helper's PATH lookup sees a program put earlier in PATH, then
	// its removal.
	hello := func(execID string) string {
		p := helperProc(false, "hello")
		p.Env = []string{"PATH=/tmp/a:/tmp/b"}
		o, se, st := out(execID, p)
		fast(execID)
		if st != 0 {
			t.Errorf("%s: status %d, stderr %q", execID, st, se)
		}
		return o
	}
	sh := func(execID, script string) {
		if _, se, st := out(execID, helperProc(false, "sh", "-c", script)); st != 0 {
			t.Fatalf("%s: status %d: %s", execID, st, se)
		}
	}
	sh("mk-b", "mkdir -p /tmp/b && printf '#!/bin/sh\\necho B\\n' >/tmp/b/hello && chmod 755 /tmp/b/hello")
	for i, c := range []struct{ script, want string }{
		{"", "B\n"},
		{"", "B\n"},
		{"mkdir -p /tmp/a && printf '#!/bin/sh\\necho A\\n' >/tmp/a/hello && chmod 755 /tmp/a/hello", "A\n"},
		{"rm /tmp/a/hello", "B\n"},
	} {
		if c.script != "" {
			sh(fmt.Sprintf("change%d", i), c.script)
		}
		if got := hello(fmt.Sprintf("hello%d", i)); got != c.want {
			t.Errorf("hello %d printed %q, want %q", i, got, c.want)
		}
	}

	// Kill the helper from inside the container: the next execs take
	// libcontainer's path, and the helper is not started again.
	// The helper may die before it answers: the exec then fails (the
	// process may have run: it is not started again).
	if err := e.execProc(id, "kill-helper", helperProc(false, "kill", "-9", helperPid)); err == nil {
		e.readAll(id, "kill-helper", false)
		e.readAll(id, "kill-helper", true)
		if st := e.wait(id, "kill-helper"); st != 0 {
			t.Fatalf("kill -9 %s: status %d", helperPid, st)
		}
	} else if !strings.Contains(err.Error(), "may have run") {
		t.Fatalf("kill -9 %s: %v", helperPid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.a.Logs(), "exec helper exited") {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not see the helper exit")
		}
		time.Sleep(50 * time.Millisecond)
	}
	slowOut, slowErr, _ := out("parity-slow", parityProc())
	if e.loggedByHelper("parity-slow") {
		t.Errorf("parity-slow was started by a helper that was killed")
	}
	if !strings.Contains(e.a.Logs(), "using libcontainer's exec from now on") {
		t.Errorf("the agent did not log the fallback")
	}
	if slowOut != fastOut || slowErr != fastErr {
		t.Errorf("the helper's process differs from libcontainer's:\nhelper:\n%s\nlibcontainer:\n%s", fastOut, slowOut)
	}
	if o, _, _ := out("gone", helperProc(false, "sh", "-c", helperPids)); strings.TrimSpace(o) != "" {
		t.Errorf("a helper is running again: %q", o)
	}
	slowErrs := missing("slow")
	for i := range min(len(fastErrs), len(slowErrs)) {
		// The agent's error names the exec id; the rest is the same.
		f := strings.ReplaceAll(fastErrs[i], "fast-missing", "")
		s := strings.ReplaceAll(slowErrs[i], "slow-missing", "")
		if f != s {
			t.Errorf("missing command: the helper says %q, libcontainer %q", fastErrs[i], slowErrs[i])
		}
	}
}

// TestExecHelperRefused: an exec asking for more or other than the
// container's own settings (another user, no_new_privs off) takes
// libcontainer's path, which the agent logs once per reason, and the
// process gets what it asked for.
func TestExecHelperRefused(t *testing.T) {
	e := newEnv(t)
	id := newID("helperno")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	p := helperProc(false, "sh", "-c", "id -u; grep NoNewPrivs /proc/self/status")
	p.User = &pb.User{UID: 1000, GID: 1000}
	if err := e.execProc(id, "user", p); err != nil {
		t.Fatal(err)
	}
	if o := e.readAll(id, "user", false); !strings.HasPrefix(o, "1000\n") {
		t.Errorf("user 1000's process printed %q", o)
	}
	e.wait(id, "user")
	p = helperProc(false, "grep", "NoNewPrivs", "/proc/self/status")
	p.NoNewPrivileges = false
	if err := e.execProc(id, "nnp", p); err != nil {
		t.Fatal(err)
	}
	if o := e.readAll(id, "nnp", false); !strings.Contains(o, "0") {
		t.Errorf("no_new_privs off: printed %q", o)
	}
	e.wait(id, "nnp")
	for _, x := range []string{"user", "nnp"} {
		if e.loggedByHelper(x) {
			t.Errorf("%s was started by the helper", x)
		}
	}
	logs := e.a.Logs()
	for _, reason := range []string{"the user differs", "no_new_privileges differs"} {
		if strings.Count(logs, reason) != 1 {
			t.Errorf("reason %q logged %d times, want once", reason, strings.Count(logs, reason))
		}
	}
	// Nothing started it.
	if strings.Contains(logs, "exec helper started") {
		t.Errorf("a helper was started for processes it cannot serve")
	}
}

// waitHelper makes the first exec in container id, which starts its exec
// helper, and waits until the helper is up.
func (e *env) waitHelper(id string, p *pb.Process) {
	e.t.Helper()
	if err := e.execProc(id, "first", p); err != nil {
		e.t.Fatalf("first exec: %v", err)
	}
	e.readAll(id, "first", false)
	e.readAll(id, "first", true)
	e.wait(id, "first")
	for deadline := time.Now().Add(60 * time.Second); ; {
		for line := range strings.Lines(e.a.Logs()) {
			if strings.Contains(line, "exec helper started") && strings.Contains(line, "container_id="+id+" ") {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the exec helper of %s did not start", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExecHelperConfinement: the helper runs with the container's
// seccomp filter and user, and so do the processes it starts: a denied
// syscall stays denied; a user other than root can reopen its stdio
// (the agent gives it the pipes, as libcontainer's init does).
func TestExecHelperConfinement(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	for _, c := range []struct {
		name   string
		edit   func(s *pb.Spec, p *pb.Process)
		script string
		want   []string
	}{
		{"seccomp", func(s *pb.Spec, p *pb.Process) {
			s.Linux.Seccomp = &pb.LinuxSeccomp{
				DefaultAction: "SCMP_ACT_ALLOW",
				Architectures: []string{"SCMP_ARCH_X86_64"},
				Syscalls: []*pb.LinuxSyscall{{
					Names: []string{"mkdir", "mkdirat"}, Action: "SCMP_ACT_ERRNO",
					ErrnoRet: &pb.LinuxSyscall_Errnoret{Errnoret: 13},
				}},
			}
		}, "mkdir /tmp/denied 2>&1; echo rc=$?; grep ^Seccomp: /proc/self/status", []string{"Permission denied", "rc=1", "Seccomp:\t2"}},
		{"user", func(s *pb.Spec, p *pb.Process) {
			s.Process.User = &pb.User{UID: 1000, GID: 1000}
			p.User = &pb.User{UID: 1000, GID: 1000}
		}, "id -u; echo via-reopen >/dev/stdout; echo err-reopen >/dev/stderr; grep ^CapEff /proc/self/status", []string{"1000\n", "via-reopen\n", "err-reopen\n", "CapEff:\t0000000000000000"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := newID("confine")
			s := spec(rootfs, "sleep", "1000")
			p := helperProc(false, "sh", "-c", c.script)
			c.edit(s, p)
			e.run(id, s)
			e.waitHelper(id, p)
			if err := e.execProc(id, "check-"+c.name, p); err != nil {
				t.Fatal(err)
			}
			out := e.readAll(id, "check-"+c.name, false) + e.readAll(id, "check-"+c.name, true)
			e.wait(id, "check-"+c.name)
			if !e.byHelper("check-" + c.name) {
				t.Errorf("not started by the exec helper")
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}
}

// TestExecHelperStopped: a helper stopped from inside the container
// (SIGSTOP) makes the next exec fail after the helper's timeout, not
// hang; it is retired and later execs take libcontainer's path.
func TestExecHelperStopped(t *testing.T) {
	e := newEnv(t)
	id := newID("helperstop")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	e.waitHelper(id, helperProc(false, "true"))
	if err := e.execProc(id, "stop", helperProc(false, "sh", "-c", "("+helperPids+") | xargs kill -STOP")); err != nil {
		t.Fatal(err)
	}
	e.readAll(id, "stop", false)
	e.wait(id, "stop")
	start := time.Now()
	err := e.execProc(id, "stuck", helperProc(false, "true"))
	if err == nil || !strings.Contains(err.Error(), "may have run") {
		t.Fatalf("exec with the helper stopped: %v, want the helper's failure", err)
	}
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("the failure took %v", d)
	}
	e.execWithoutHelper(id)
}

// TestExecHelperDiesStarting: a helper that dies before its first answer
// (here the container's seccomp filter kills it at its first recvmsg; in
// life, the container's init killed while the helper starts) is noticed
// at once, not after the helper's 10 s timeout, during which the
// container's removal would wait; later execs take libcontainer's path.
func TestExecHelperDiesStarting(t *testing.T) {
	e := newEnv(t)
	id := newID("helperdies")
	s := spec(testutil.BusyboxRootfs(t), "sleep", "1000")
	s.Linux.Seccomp = &pb.LinuxSeccomp{
		DefaultAction: "SCMP_ACT_ALLOW",
		Architectures: []string{"SCMP_ARCH_X86_64"},
		Syscalls:      []*pb.LinuxSyscall{{Names: []string{"recvmsg"}, Action: "SCMP_ACT_KILL_PROCESS"}},
	}
	e.run(id, s)
	if err := e.execProc(id, "first", helperProc(false, "true")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.wait(id, "first")
	for {
		if strings.Contains(e.a.Logs(), "the exec helper did not start") {
			break
		}
		if strings.Contains(e.a.Logs(), "exec helper started") {
			t.Fatal("the helper started, and answered, under a filter that kills it at its first recvmsg")
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no word of the helper after 30 s; agent log:\n%s", e.a.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the helper's death was noticed after %v, want well under its 10 s timeout", d.Round(time.Millisecond))
	}
	e.execWithoutHelper(id)
}

// execWithoutHelper runs an exec in container id, whose helper was
// retired, and checks it ran by libcontainer's path.
func (e *env) execWithoutHelper(id string) {
	e.t.Helper()
	if err := e.execProc(id, "after", helperProc(false, "echo", "after")); err != nil {
		e.t.Fatal(err)
	}
	if o := e.readAll(id, "after", false); o != "after\n" {
		e.t.Errorf("exec after: %q", o)
	}
	if st := e.wait(id, "after"); st != 0 || e.loggedByHelper("after") {
		e.t.Errorf("exec after: status %d, by the helper %v", st, e.loggedByHelper("after"))
	}
}
