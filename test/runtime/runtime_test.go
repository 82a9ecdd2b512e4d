package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
)

// lines delivers what r reads, line by line, until it ends.
func lines(r io.Reader) <-chan string {
	ch := make(chan string, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine waits for a line holding want.
func waitLine(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before %q", want)
			}
			if strings.Contains(l, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q in the output", want)
		}
	}
}

// rest collects what is left of ch until it ends.
func rest(t *testing.T, ch <-chan string) string {
	t.Helper()
	var b strings.Builder
	timeout := time.After(time.Minute)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				return b.String()
			}
			b.WriteString(l + "\n")
		case <-timeout:
			t.Fatalf("output did not end; so far %q", b.String())
		}
	}
}

// TestLifecycle: create, state, start, pause, resume, kill, delete, with
// the container's output on the fds create was given, and runc's errors
// on the way.
func TestLifecycle(t *testing.T) {
	const id = "life"
	b := bundle(t, []string{"sh", "-c", `trap "echo term; exit 7" TERM; echo out; echo err >&2; while :; do sleep 0.1; done`}, nil)
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	defer errR.Close()
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	start := time.Now()
	cmd := runtimeCmd(ctx, "create", "--bundle", b, "--pid-file", pidFile, id)
	cmd.Stdout, cmd.Stderr = outW, errW
	err = cmd.Run()
	outW.Close()
	errW.Close()
	stdout, stderr := lines(outR), lines(errR)
	if err != nil {
		t.Fatalf("create: %v: %s", err, rest(t, stderr))
	}
	t.Logf("create took %v", time.Since(start).Round(time.Millisecond))

	pb, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(pb))
	if err != nil {
		t.Fatalf("pid file %q: %v", pb, err)
	}
	s := getState(t, id)
	if s.Status != "created" || s.Pid != pid || s.Bundle != b || s.Rootfs != busybox || s.ID != id {
		t.Fatalf("state after create: %+v (pid file %d)", s, pid)
	}
	if !proc.Running(pid, 0) {
		t.Fatalf("owner %d does not run", pid)
	}
	expectFail(t, "container with id exists: "+id, "create", "--bundle", b, id)

	mustRT(t, "start", id)
	waitLine(t, stdout, "out")
	waitLine(t, stderr, "err")
	waitStatus(t, id, "running")
	var list []state
	if out := mustRT(t, "list", "--format", "json"); json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != id || list[0].Status != "running" || list[0].Pid != pid {
		t.Errorf("list --format json: %q", out)
	}
	if out := mustRT(t, "list"); !strings.Contains(out, id) || !strings.Contains(out, "running") {
		t.Errorf("list: %q", out)
	}
	expectFail(t, "cannot start an already running container", "start", id)
	expectFail(t, "cannot delete container "+id+" that is not stopped: running", "delete", id)

	// exec in the foreground: the process's output and exit status.
	out, code := rt([]byte("typed\n"), "exec", "-e", "X=from-exec", id, "sh", "-c", "read l; echo $X $l; exit 4")
	if code != 4 || out != "from-exec typed\n" {
		t.Errorf("exec: exit %d, %q; want 4, %q", code, out, "from-exec typed\n")
	}
	expectFail(t, "exec args cannot be empty", "exec", id)
	// exec --detach: the pid file names a process that lives as long as
	// the exec'd one.
	execPid := filepath.Join(t.TempDir(), "exec.pid")
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	ecmd := runtimeCmd(ctx, "exec", "--detach", "--pid-file", execPid, id, "sleep", "1")
	ecmd.Stdin, ecmd.Stdout, ecmd.Stderr = null, null, null
	if err := ecmd.Run(); err != nil {
		t.Fatalf("exec --detach: %v", err)
	}
	if b, err := os.ReadFile(execPid); err != nil {
		t.Error(err)
	} else if p, _ := strconv.Atoi(string(b)); !proc.Running(p, 0) {
		t.Errorf("exec --detach: pid %s does not run", b)
	} else {
		deadline := time.Now().Add(time.Minute)
		for proc.Running(p, 0) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if proc.Running(p, 0) {
			t.Errorf("exec --detach: pid %d still runs after sleep 1 ended", p)
		}
	}

	// ps, update and events --stats: the guest's view.
	var pids []int
	if out := mustRT(t, "ps", "--format", "json", id); json.Unmarshal([]byte(out), &pids) != nil || len(pids) < 1 || pids[0] != 1 {
		t.Errorf("ps --format json: %q, want the guest pids from 1", out)
	}
	res := filepath.Join(t.TempDir(), "res.json")
	os.WriteFile(res, []byte(`{"pids":{"limit":100}}`), 0o644)
	mustRT(t, "update", "--resources", res, id)
	var ev struct {
		Type string `json:"type"`
		Data struct {
			Pids struct {
				Current, Limit int
			} `json:"pids"`
		} `json:"data"`
	}
	if out := mustRT(t, "events", "--stats", id); json.Unmarshal([]byte(out), &ev) != nil || ev.Type != "stats" || ev.Data.Pids.Limit != 100 || ev.Data.Pids.Current < 1 {
		t.Errorf("events --stats after update pids.limit 100: %q", out)
	}

	mustRT(t, "pause", id)
	expectFail(t, "cannot exec in a paused container", "exec", id, "true")
	waitStatus(t, id, "paused")
	mustRT(t, "resume", id)
	waitStatus(t, id, "running")

	mustRT(t, "kill", id) // SIGTERM
	s = waitStatus(t, id, "stopped")
	if s.Pid != 0 {
		t.Errorf("stopped container's pid %d, want 0", s.Pid)
	}
	if out := rest(t, stdout); !strings.Contains(out, "term") {
		t.Errorf("stdout after the kill: %q, want term", out)
	}
	rest(t, stderr)
	deadline := time.Now().Add(30 * time.Second)
	for proc.Running(pid, 0) {
		if time.Now().After(deadline) {
			t.Fatalf("owner %d still runs after the container stopped", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The owner recorded the container's exit status (and exited with it).
	if b, _ := os.ReadFile(filepath.Join(stateRoot, id, "state.json")); !bytes.Contains(b, []byte(`"exit_status": 7`)) {
		t.Errorf("state.json after exit 7: %s", b)
	}
	// Stopped until deleted: no VM left meanwhile.
	if getState(t, id).Status != "stopped" {
		t.Error("not stopped")
	}
	expectFail(t, "container not running", "kill", id, "KILL")
	expectFail(t, "cannot start a container that has stopped", "start", id)
	expectFail(t, "cannot exec in a stopped container", "exec", id, "true")
	mustRT(t, "delete", id)
	noLeftovers(t, id)
	expectFail(t, "container does not exist", "state", id)
	expectFail(t, "container does not exist", "delete", id)
}

// TestRun: run in the foreground exits with the container's status, its
// output on run's stdout, input from run's stdin; the root path is the
// bundle's relative "rootfs"; nothing is left afterwards.
func TestRun(t *testing.T) {
	const id = "runner"
	b := bundle(t, []string{"sh", "-c", "read line; echo got $line; uname -r; exit 3"}, func(s *specs.Spec) { s.Root.Path = "rootfs" })
	if err := os.Symlink(busybox, filepath.Join(b, "rootfs")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "run", "--bundle", b, id)
	var out, errb bytes.Buffer
	cmd.Stdin = strings.NewReader("hello\n")
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Fatalf("run: exit %d, want 3; stdout %q, stderr %q", code, out.String(), errb.String())
	}
	var u unix.Utsname
	unix.Uname(&u)
	host := unix.ByteSliceToString(u.Release[:])
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != 2 || got[0] != "got hello" || got[1] == "" || got[1] == host {
		t.Errorf("run printed %q (host kernel %s), want got hello and the guest's kernel", out.String(), host)
	}
	noLeftovers(t, id)
	expectFail(t, "container does not exist", "state", id)
}

// TestEtcFiles: a spec without files of its engine gets docker's
// /etc/hosts (localhost, its hostname at the NAT's address: the spec has
// no network namespace), an /etc/hostname that says its hostname and the
// NAT's resolver; a file the spec mounts (podman's, docker's) is kept.
func TestEtcFiles(t *testing.T) {
	const id = "etcfiles"
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	b := bundle(t, []string{"sh", "-c", "cat /etc/hostname; hostname; cat /etc/resolv.conf /etc/hosts"}, func(s *specs.Spec) { s.Hostname = "rt-etc" })
	out, code := rt(nil, "run", "--bundle", b, id)
	if code != 0 || !strings.HasPrefix(out, "rt-etc\nrt-etc\nnameserver 10.0.2.3\n") || !strings.Contains(out, "127.0.0.1\tlocalhost\n") || !strings.Contains(out, "10.0.2.15\trt-etc\n") {
		t.Errorf("run: exit %d, %q; want /etc/hostname and hostname rt-etc, the NAT's resolver, and /etc/hosts with localhost and rt-etc at 10.0.2.15", code, out)
	}
	noLeftovers(t, id)

	mine := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(mine, []byte("192.0.2.1\tengine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b = bundle(t, []string{"cat", "/etc/hosts"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: mine, Options: []string{"rbind", "ro"}})
	})
	if out, code := rt(nil, "run", "--bundle", b, id); code != 0 || out != "192.0.2.1\tengine\n" {
		t.Errorf("run with the spec's /etc/hosts: exit %d, %q; want the spec's file", code, out)
	}
	noLeftovers(t, id)
}

// TestCreateFails: a create that fails once the VM is up (a bind mount
// whose source does not exist) fails with the real error and leaves
// nothing; a bundle without config.json is refused as runc refuses it.
func TestCreateFails(t *testing.T) {
	const id = "badmount"
	b := bundle(t, []string{"true"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/nonexistent/vc-runtime-test", Options: []string{"rbind"}})
	})
	out, code := rt(nil, "create", "--bundle", b, id)
	if code != 1 || !strings.Contains(out, "/nonexistent/vc-runtime-test") {
		t.Errorf("create with a missing mount source: exit %d, %q", code, out)
	}
	noLeftovers(t, id)
	expectFail(t, "container does not exist", "state", id)
	expectFail(t, "JSON specification file config.json not found", "create", "--bundle", t.TempDir(), "noconfig")
	noLeftovers(t, "noconfig")
}

// TestDeleteForce: delete --force of a running container kills it and
// removes everything.
func TestDeleteForce(t *testing.T) {
	const id = "forced"
	b := bundle(t, []string{"sh", "-c", "trap '' TERM; while :; do sleep 1; done"}, nil)
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	runDetached(t, b, id)
	waitStatus(t, id, "running")
	mustRT(t, "delete", "--force", id)
	noLeftovers(t, id)
}

// TestDeleteCreated: delete --force of a container that was created and
// never started stops its VM at once, and writes nothing to its streams. The owner waited 5 s for the output
// of a process that never ran, so each of runtime-tools'
// linux_cgroups_cpus 17 containers took 5 s more to delete than to boot.
func TestDeleteCreated(t *testing.T) {
	const id = "created-del"
	b := bundle(t, []string{"true"}, nil)
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The container's streams are create's: files, not pipes that its
	// owner would hold open.
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := runtimeCmd(ctx, "create", "--bundle", b, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("create: %v", err)
	}
	start := time.Now()
	mustRT(t, "delete", "--force", id)
	took := time.Since(start)
	noLeftovers(t, id)
	t.Logf("delete --force of a created container took %v", took.Round(time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("delete --force of a created container took %v; want under 4 s (its VM stops in well under a second)", took.Round(time.Millisecond))
	}
	// The container never ran: nothing of the runtime's own logs (ttRPC's
	// as the VM stops) is in its stderr.
	if b, _ := os.ReadFile(stderr.Name()); len(b) != 0 {
		t.Errorf("the container's stderr: %q, want nothing", b)
	}
}

// TestConsoleSocket: with process.terminal, the master of a terminal
// arrives on --console-socket (SCM_RIGHTS, as runc sends it) and carries
// the container's terminal.
func TestConsoleSocket(t *testing.T) {
	const id = "tty"
	b := bundle(t, []string{"sh", "-c", "test -t 0 && test -t 1 && echo isatty; read x; echo got $x"}, func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Process.ConsoleSize = &specs.Box{Height: 24, Width: 80}
	})
	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	master := make(chan *os.File, 1)
	go func() {
		defer close(master)
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return
		}
		master <- os.NewFile(uintptr(fds[0]), "master")
	}()
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	expectFail(t, "cannot allocate tty if runc will detach without setting console socket", "create", "--bundle", b, id)
	noLeftovers(t, id)
	// A relative socket path, from create's working directory.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "create", "--bundle", b, "--console-socket", "console.sock", id)
	cmd.Dir = filepath.Dir(sock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("create --console-socket: %v: %s", err, out)
	}
	m := <-master
	if m == nil {
		t.Fatal("no terminal master on the console socket")
	}
	defer m.Close()
	mustRT(t, "start", id)
	out := lines(m)
	waitLine(t, out, "isatty")
	if _, err := m.Write([]byte("typed\r")); err != nil {
		t.Fatal(err)
	}
	waitLine(t, out, "got typed")
	waitStatus(t, id, "stopped")
	mustRT(t, "delete", id)
	noLeftovers(t, id)
}

// TestVMSize: the container's memory limit is added to the VM's memory
// (as the containerd shim does for a lone container).
func TestVMSize(t *testing.T) {
	const id = "sized"
	mem := int64(256 << 20)
	b := bundle(t, []string{"sh", "-c", "grep MemTotal /proc/meminfo"}, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}}
	})
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	out, code := rt(nil, "run", "--bundle", b, id)
	f := strings.Fields(out)
	if code != 0 || len(f) < 2 {
		t.Fatalf("run: exit %d, %q", code, out)
	}
	kb, err := strconv.Atoi(f[1])
	if err != nil || kb < 400<<10 {
		t.Errorf("MemTotal %q with a 256 MiB limit on the default 256 MiB VM: want more than 400 MiB", out)
	}
	noLeftovers(t, id)
}

// TestOwnerKilled: a container whose owner was killed (SIGKILL: no
// teardown) is stopped, and delete removes what the owner left: its VM
// went with it.
func TestOwnerKilled(t *testing.T) {
	const id = "orphan"
	b := bundle(t, []string{"sleep", "1000"}, nil)
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	runDetached(t, b, id)
	s := waitStatus(t, id, "running")
	if err := unix.Kill(s.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, id, "stopped")
	expectFail(t, "container not running", "kill", id)
	mustRT(t, "delete", id)
	noLeftovers(t, id)
}

// TestRunTerminal: run in the foreground with process.terminal and no
// console socket gives the container the caller's terminal (here the
// pty of script(1)), raw, and exits with the container's status.
func TestRunTerminal(t *testing.T) {
	const id = "runtty"
	script, err := exec.LookPath("script")
	if err != nil {
		testenv.Skip(t, "script(1) not installed (bsdutils)")
	}
	b := bundle(t, []string{"sh", "-c", "test -t 0 && test -t 1 && echo isatty; read x; echo got $x; exit 4"}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line := strings.Join([]string{runtimeBin, "--root", stateRoot, "run", "--bundle", b, id}, " ")
	cmd := exec.CommandContext(ctx, script, "-qec", line, "/dev/null")
	cmd.Env = runtimeCmd(ctx).Env
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := lines(outR)
	waitLine(t, out, "isatty")
	io.WriteString(in, "typed\n")
	// The container's terminal echoes the input; a local terminal that
	// were not raw would echo it too.
	echoes := 0
	for l := range out {
		l = strings.TrimSpace(l)
		if l == "typed" {
			echoes++
		}
		if l == "got typed" {
			break
		}
	}
	if echoes != 1 {
		t.Errorf("input echoed %d times, want once (by the container's terminal)", echoes)
	}
	rest(t, out)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("run with a terminal: exit %d, want 4", code)
	}
	noLeftovers(t, id)
}

// runDetached runs bundle b as container id with run --detach. The
// container keeps run's streams: files (/dev/null), not pipes a caller
// would read to their end.
func runDetached(t *testing.T, b, id string) {
	t.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "run", "--detach", "--bundle", b, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	if err := cmd.Run(); err != nil {
		t.Fatalf("run --detach: %v", err)
	}
}
