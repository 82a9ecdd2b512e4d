package shimtest

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// suites are the conformance suites: containerd/shimtest's run (here
// Lifecycle), exec, oom, net and layers.
var suites = []struct {
	name  string
	tests []struct {
		name string
		fn   func(*testing.T, *profile)
	}
}{
	{"Lifecycle", tests(
		"Lifecycle", testLifecycle,
		"InitExitCodes", testInitExitCodes,
		"OutputThenExit", testOutputThenExit,
		"Events", testEvents,
		"FastExitInit", testFastExitInit,
	)},
	{"Exec", tests(
		"Exec", testExec,
		"StdioRoundTrip", testStdioRoundTrip,
		"LargeStdioRoundTrip", testLargeStdioRoundTrip,
		"Clock", testClock,
		"ExitCodes", testExecExitCodes,
		"LargeFileRead", testLargeFileRead,
		"BindMountRead", testBindMountRead,
		"FastExitOutput", testFastExitOutput,
		"ExecOutputDrainAfterExit", testExecOutputDrainAfterExit,
	)},
	{"OOM", tests("OOM", testOOM)},
	{"Net", tests(
		"OutboundTCP", testOutboundTCP,
		"OutboundUDP", testOutboundUDP,
		"DNSResolve", testDNSResolve,
		"InboundTCPListen", testInboundTCPListen,
		"LoopbackWithinContainer", testLoopbackWithinContainer,
	)},
	{"Layers", tests("HundredLayers", testHundredLayers)},
}

func tests(nameFns ...any) []struct {
	name string
	fn   func(*testing.T, *profile)
} {
	var out []struct {
		name string
		fn   func(*testing.T, *profile)
	}
	for i := 0; i < len(nameFns); i += 2 {
		out = append(out, struct {
			name string
			fn   func(*testing.T, *profile)
		}{nameFns[i].(string), nameFns[i+1].(func(*testing.T, *profile))})
	}
	return out
}

// runSuites runs every suite against p.
func runSuites(t *testing.T, p *profile) {
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			for _, tc := range s.tests {
				t.Run(tc.name, func(t *testing.T) {
					if why, ok := p.skip[s.name+"/"+tc.name]; ok {
						t.Skip(why)
					}
					tc.fn(t, p)
				})
			}
		})
	}
}

// testLifecycle: create, start, state, output, kill, wait, delete, shutdown.
func testLifecycle(t *testing.T, p *profile) {
	tk := newTask(t, p, []string{"/bin/forever", "hello"})
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	c, err := tk.tc.Create(tk.ctx, tk.createRequest("", out.path, errOut.path))
	if err != nil {
		t.Fatal("create:", err)
	}
	st, err := tk.tc.State(tk.ctx, &taskAPI.StateRequest{ID: tk.id})
	if err != nil {
		t.Fatal("state:", err)
	}
	if st.GetStatus() != tasktypes.Status_CREATED {
		t.Errorf("status after create %s, want CREATED", st.GetStatus())
	}
	s, err := tk.tc.Start(tk.ctx, &taskAPI.StartRequest{ID: tk.id})
	if err != nil {
		t.Fatal("start:", err)
	}
	if s.GetPid() == 0 || c.GetPid() == 0 {
		t.Errorf("pids: create %d, start %d; want both set", c.GetPid(), s.GetPid())
	}
	if st, err = tk.tc.State(tk.ctx, &taskAPI.StateRequest{ID: tk.id}); err != nil || st.GetStatus() != tasktypes.Status_RUNNING {
		t.Fatalf("state after start: %v, %v; want RUNNING", st.GetStatus(), err)
	}
	out.waitFor(t, "hello", 30*time.Second)
	if _, err := tk.tc.Kill(tk.ctx, &taskAPI.KillRequest{ID: tk.id, Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		t.Fatal("kill:", err)
	}
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	if err != nil {
		t.Fatal("wait:", err)
	}
	if w.GetExitStatus() != 128+uint32(syscall.SIGKILL) {
		t.Errorf("exit status %d after SIGKILL, want 137", w.GetExitStatus())
	}
	if st, err = tk.tc.State(tk.ctx, &taskAPI.StateRequest{ID: tk.id}); err != nil || st.GetStatus() != tasktypes.Status_STOPPED {
		t.Errorf("state after exit: %v, %v; want STOPPED", st.GetStatus(), err)
	}
	d, err := tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	if err != nil {
		t.Fatal("delete:", err)
	}
	if d.GetExitStatus() != w.GetExitStatus() {
		t.Errorf("delete says exit %d, wait said %d", d.GetExitStatus(), w.GetExitStatus())
	}
	if _, err := tk.tc.State(tk.ctx, &taskAPI.StateRequest{ID: tk.id}); err == nil {
		t.Error("state of a deleted task: no error")
	}
	tk.shutdown()
}

// testInitExitCodes: the init's exit code is the task's.
func testInitExitCodes(t *testing.T, p *profile) {
	for _, code := range []int{0, 1, 2, 42, 127, 255} {
		t.Run(fmt.Sprintf("Exit%d", code), func(t *testing.T) {
			tk, _, _ := startTask(t, p, []string{"/bin/exit", strconv.Itoa(code)})
			w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
			if err != nil {
				t.Fatal("wait:", err)
			}
			if w.GetExitStatus() != uint32(code) {
				t.Fatalf("exit status %d, want %d", w.GetExitStatus(), code)
			}
			tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
			tk.shutdown()
		})
	}
}

// testOutputThenExit: all 50 lines of a process that exits 7 at once.
func testOutputThenExit(t *testing.T, p *profile) {
	tk, out, _ := startTask(t, p, []string{"/bin/tickexit"})
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	if err != nil {
		t.Fatal("wait:", err)
	}
	if w.GetExitStatus() != 7 {
		t.Fatalf("exit status %d, want 7", w.GetExitStatus())
	}
	out.waitFor(t, "tick 50\n", 10*time.Second)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50: %q", len(lines), out.String())
	}
	for i, l := range lines {
		if l != fmt.Sprintf("tick %d", i+1) {
			t.Fatalf("line %d is %q", i+1, l)
		}
	}
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	tk.shutdown()
}

// testEvents: create, start, exit and delete events, in order, with the
// namespace and the exit status.
func testEvents(t *testing.T, p *profile) {
	tk, _, _ := startTask(t, p, []string{"/bin/exit", "0"})
	if _, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id}); err != nil {
		t.Fatal("wait:", err)
	}
	if tk.events.waitFor("/tasks/exit", 5*time.Second) == nil {
		t.Fatalf("no exit event after wait; got %v", tk.events.topics())
	}
	if _, err := tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id}); err != nil {
		t.Fatal("delete:", err)
	}
	want := []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"}
	for _, topic := range want {
		if tk.events.waitFor(topic, 5*time.Second) == nil {
			t.Fatalf("no %s event; got %v", topic, tk.events.topics())
		}
	}
	tk.shutdown()
	i := 0
	for _, topic := range tk.events.topics() {
		if i < len(want) && topic == want[i] {
			i++
		}
	}
	if i != len(want) {
		t.Errorf("events out of order: want %v in order, got %v", want, tk.events.topics())
	}
	e := tk.events.waitFor("/tasks/exit", 0)
	if e.Namespace != tk.ns {
		t.Errorf("exit event namespace %q, want %q", e.Namespace, tk.ns)
	}
	var exit events.TaskExit
	if err := typeurl.UnmarshalTo(e.Event, &exit); err != nil {
		t.Fatal(err)
	}
	if exit.GetContainerID() != tk.id || exit.GetExitStatus() != 0 {
		t.Errorf("exit event %+v, want container %s status 0", &exit, tk.id)
	}
}

// burstSize is what burstexit writes in the fast-exit tests.
const burstSize = 8 << 20

// testFastExitInit: an init that writes 8 MiB and exits, the shim told
// to shut down at once: every byte still reaches the FIFO.
func testFastExitInit(t *testing.T, p *profile) {
	tk, out, _ := startTask(t, p, []string{"/bin/burstexit", strconv.Itoa(burstSize), "0"})
	tk.shutdown()
	out.waitClosed(t, 60*time.Second)
	checkTiled(t, out.String(), burstSize)
}

// checkTiled checks got is the first n bytes of the tile stream.
func checkTiled(t *testing.T, got string, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d bytes, want %d", len(got), n)
	}
	want := tiledCRC(int64(n))
	if c := crcOf(got); c != want {
		t.Fatalf("crc32c %s, want %s: data corrupted", c, want)
	}
}

// testExec: the output of an exec'd process comes back.
func testExec(t *testing.T, p *profile) {
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	code, got := tk.exec("exec1", "/bin/echo", "execworks")
	if code != 0 || !strings.Contains(got, "execworks") {
		t.Fatalf("exec echo: exit %d, output %q", code, got)
	}
	tk.stop()
}

// testStdioRoundTrip: what is written to an exec's stdin comes back from
// cat's stdout; CloseIO ends its input.
func testStdioRoundTrip(t *testing.T, p *profile) {
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	dir := t.TempDir()
	inPath, in := newInput(t, dir, "stdin")
	eout := newOutput(t, dir, "stdout")
	eerr := newOutput(t, dir, "stderr")
	tk.execStart("rt", inPath, eout.path, eerr.path, "/bin/cat")
	token := "roundtrip-" + randomHex()
	if _, err := in.Write([]byte(token + "\n")); err != nil {
		t.Fatal(err)
	}
	eout.waitFor(t, token, 30*time.Second)
	in.Close()
	if _, err := tk.tc.CloseIO(tk.ctx, &taskAPI.CloseIORequest{ID: tk.id, ExecID: "rt", Stdin: true}); err != nil {
		t.Fatal("close stdin:", err)
	}
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id, ExecID: "rt"})
	if err != nil || w.GetExitStatus() != 0 {
		t.Fatalf("cat after stdin EOF: exit %d, %v; want 0", w.GetExitStatus(), err)
	}
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id, ExecID: "rt"})
	tk.stop()
}

// testClock: the container's clock is the host's, within 2 s.
func testClock(t *testing.T, p *profile) {
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	before := time.Now()
	code, got := tk.exec("clock", "/bin/date", "+%s")
	after := time.Now()
	if code != 0 {
		t.Fatalf("date: exit %d", code)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(got), 10, 64)
	if err != nil {
		t.Fatalf("date printed %q", got)
	}
	ct := time.Unix(sec, 0)
	const tolerance = 2 * time.Second
	if ct.Before(before.Add(-tolerance)) || ct.After(after.Add(tolerance)) {
		t.Fatalf("container clock %s, host %s..%s", ct.UTC(), before.UTC(), after.UTC())
	}
	tk.stop()
}

// testExecExitCodes: an exec's exit code comes back through Wait.
func testExecExitCodes(t *testing.T, p *profile) {
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	for i, code := range []int{0, 1, 2, 42, 127, 255} {
		t.Run(fmt.Sprintf("Exit%d", code), func(t *testing.T) {
			tk.t = t
			defer func() { tk.t = t }()
			if got, _ := tk.exec(fmt.Sprintf("exit-%d", i), "/bin/exit", strconv.Itoa(code)); got != uint32(code) {
				t.Fatalf("exit status %d, want %d", got, code)
			}
		})
	}
	tk.t = t
	tk.stop()
}

// testLargeStdioRoundTrip: 20 MiB through an exec'd cat's stdin and
// stdout, whole and in order; CloseIO ends its input.
func testLargeStdioRoundTrip(t *testing.T, p *profile) {
	const size = 20 << 20
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	dir := t.TempDir()
	inPath, in := newInput(t, dir, "stdin")
	eout := newOutput(t, dir, "stdout")
	eerr := newOutput(t, dir, "stderr")
	tk.execStart("large-rt", inPath, eout.path, eerr.path, "/bin/cat")
	written := make(chan error, 1)
	go func() {
		_, err := io.Copy(in, io.LimitReader(&tile{}, size))
		in.Close()
		written <- err
	}()
	select {
	case err := <-written:
		if err != nil {
			t.Fatal("write stdin:", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("writing 20 MiB to stdin took over 2 minutes")
	}
	if _, err := tk.tc.CloseIO(tk.ctx, &taskAPI.CloseIORequest{ID: tk.id, ExecID: "large-rt", Stdin: true}); err != nil {
		t.Fatal("close stdin:", err)
	}
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id, ExecID: "large-rt"})
	if err != nil || w.GetExitStatus() != 0 {
		t.Fatalf("cat: exit %d, %v", w.GetExitStatus(), err)
	}
	eout.waitClosed(t, 30*time.Second)
	checkTiled(t, eout.String(), size)
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id, ExecID: "large-rt"})
	tk.stop()
}

// testLargeFileRead: /data/bigfile, in the rootfs's second lower layer,
// reads back whole.
func testLargeFileRead(t *testing.T, p *profile) {
	im := rootfsImages(t)
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	code, got := tk.exec("crc", "/bin/crc32c", "/data/bigfile")
	want := fmt.Sprintf("%s %d", im.bigCRC, bigFileSize)
	if code != 0 || strings.TrimSpace(got) != want {
		t.Fatalf("crc32c of /data/bigfile: exit %d, %q; want %q", code, got, want)
	}
	tk.stop()
}

// testFastExitOutput: an exec that writes 8 MiB and exits while the shim
// is told to shut down (its container still there): every byte arrives.
func testFastExitOutput(t *testing.T, p *profile) {
	tk, _, _ := startTask(t, p, []string{"/bin/forever"})
	dir := t.TempDir()
	eout := newOutput(t, dir, "stdout")
	eerr := newOutput(t, dir, "stderr")
	tk.execStart("burst", "", eout.path, eerr.path, "/bin/burstexit", strconv.Itoa(burstSize), "0")
	tk.shutdown()
	eout.waitClosed(t, 60*time.Second)
	checkTiled(t, eout.String(), burstSize)
}

// testBindMountRead: a host file bind-mounted into the container reads
// back whole.
func testBindMountRead(t *testing.T, p *profile) {
	im := rootfsImages(t)
	tk, _, _ := startTask(t, p, []string{"/bin/forever"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Type: "bind", Source: im.bigfile, Destination: "/tmp/bigfile", Options: []string{"rbind", "ro"}})
	})
	code, got := tk.exec("crc", "/bin/crc32c", "/tmp/bigfile")
	want := fmt.Sprintf("%s %d", im.bigCRC, bigFileSize)
	if code != 0 || strings.TrimSpace(got) != want {
		t.Fatalf("crc32c of the bind-mounted file: exit %d, %q; want %q", code, got, want)
	}
	tk.stop()
}

// testExecOutputDrainAfterExit: an exec that writes 8 MiB and exits, the
// shim told to shut down at once: all of it arrives, and the stream is
// closed promptly.
func testExecOutputDrainAfterExit(t *testing.T, p *profile) {
	tk := newTask(t, p, []string{"/bin/forever"})
	tk.createStart("", "", "")
	dir := t.TempDir()
	eout := newOutput(t, dir, "stdout")
	eerr := newOutput(t, dir, "stderr")
	tk.execStart("drain", "", eout.path, eerr.path, "/bin/burstexit", strconv.Itoa(burstSize), "0")
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id, ExecID: "drain"})
	if err != nil || w.GetExitStatus() != 0 {
		t.Fatalf("burstexit: exit %d, %v", w.GetExitStatus(), err)
	}
	// The process has exited: its stream must end within seconds, not
	// when the shim gives up on it.
	eout.waitClosed(t, 10*time.Second)
	checkTiled(t, eout.String(), burstSize)
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id, ExecID: "drain"})
	tk.stop()
}

// testOOM: a process past its 128 MiB memory limit is killed by the OOM
// killer (exit 137), and the shim says so (a TaskOOM event).
func testOOM(t *testing.T, p *profile) {
	limit := int64(128 << 20)
	tk, _, _ := startTask(t, p, []string{"/bin/memhog"}, func(s *specs.Spec) {
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit, Swap: &limit}}
	})
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	if err != nil {
		t.Fatal("wait:", err)
	}
	if w.GetExitStatus() != 128+uint32(syscall.SIGKILL) {
		t.Fatalf("exit status %d, want 137 (SIGKILL from the OOM killer)", w.GetExitStatus())
	}
	if tk.events.waitFor("/tasks/oom", 5*time.Second) == nil {
		t.Errorf("no /tasks/oom event; got %v", tk.events.topics())
	}
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	tk.shutdown()
}

// testOutboundTCP: a container with no network configuration reaches a
// TCP server of the host's 127.0.0.1, as a process of the host's network
// does.
func testOutboundTCP(t *testing.T, p *profile) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	const token = "network-suite-tcp-ok"
	served := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b := make([]byte, 256)
		n, _ := c.Read(b)
		if got := strings.TrimSpace(string(b[:n])); got != token {
			served <- fmt.Errorf("host received %q, want %q", got, token)
			return
		}
		_, err = fmt.Fprintf(c, "%s\n", token)
		served <- err
	}()
	runNC(t, p, token+"\n", token, "/bin/nc", "127.0.0.1", port)
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the host saw no connection")
	}
}

// runNC runs nc (args) as a container's init with send on its stdin,
// closed after it, and checks it exits 0 having printed want.
func runNC(t *testing.T, p *profile, send, want string, args ...string) {
	t.Helper()
	tk := newTask(t, p, args)
	inPath, in := newInput(t, tk.bundle, "stdin")
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	tk.createStart(inPath, out.path, errOut.path)
	io.WriteString(in, send)
	in.Close()
	if _, err := tk.tc.CloseIO(tk.ctx, &taskAPI.CloseIORequest{ID: tk.id, Stdin: true}); err != nil {
		t.Fatal("close stdin:", err)
	}
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	if err != nil {
		t.Fatal("wait:", err)
	}
	out.waitClosed(t, 10*time.Second)
	if w.GetExitStatus() != 0 || !strings.Contains(out.String(), want) {
		t.Fatalf("%v: exit %d, stdout %q, stderr %q", args, w.GetExitStatus(), out.String(), errOut.String())
	}
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	tk.shutdown()
}

// testOutboundUDP: a container with no network configuration exchanges a
// datagram with a server of the host's 127.0.0.1.
func testOutboundUDP(t *testing.T, p *profile) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	const token = "network-suite-udp-ok"
	served := make(chan error, 1)
	go func() {
		pc.SetDeadline(time.Now().Add(30 * time.Second))
		b := make([]byte, 256)
		n, from, err := pc.ReadFrom(b)
		if err != nil {
			served <- err
			return
		}
		if got := strings.TrimSpace(string(b[:n])); got != token {
			served <- fmt.Errorf("host received %q, want %q", got, token)
			return
		}
		_, err = pc.WriteTo([]byte(token), from)
		served <- err
	}()
	runNC(t, p, token, token, "/bin/nc", "-u", "127.0.0.1", port)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// testDNSResolve resolves a public name: it needs the internet.
func testDNSResolve(t *testing.T, p *profile) {
	t.Skip("DNSResolve resolves example.com through the host's resolver: this machine has no internet access")
}

// testInboundTCPListen: a container with no network configuration listens
// on a port of its choosing (nc -v -l 0, which says which on stderr
// before it accepts); the host connects to 127.0.0.1:PORT at once, as
// soon as it reads the port, and what it sends reaches the container
// (its stdout). A refused connection fails: inbound is part of the
// default network's contract.
func testInboundTCPListen(t *testing.T, p *profile) {
	tk := newTask(t, p, []string{"/bin/nc", "-v", "-l", "0"})
	inPath, in := newInput(t, tk.bundle, "stdin")
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	tk.createStart(inPath, out.path, errOut.path)
	port := listeningPort(t, errOut, 15*time.Second)
	const token = "network-suite-inbound-ok"
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), 15*time.Second)
	if err != nil {
		t.Fatalf("the host cannot connect to the container's listener at 127.0.0.1:%s: %v (inbound is part of the default network's contract)", port, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", token); err != nil {
		t.Fatal("send:", err)
	}
	out.waitFor(t, token, 10*time.Second)
	c.Close()
	in.Close()
	if _, err := tk.tc.CloseIO(tk.ctx, &taskAPI.CloseIORequest{ID: tk.id, Stdin: true}); err != nil {
		t.Fatal("close stdin:", err)
	}
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	if err != nil {
		t.Fatal("wait:", err)
	}
	out.waitClosed(t, 10*time.Second)
	if w.GetExitStatus() != 0 {
		t.Fatalf("nc -l: exit %d, stdout %q, stderr %q", w.GetExitStatus(), out.String(), errOut.String())
	}
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	tk.shutdown()
}

// listeningPort waits for nc -v's "Listening on ADDR PORT" line.
func listeningPort(t *testing.T, errOut *output, d time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s := errOut.String()
		if end := strings.LastIndexByte(s, '\n'); end >= 0 {
			for _, line := range strings.Split(s[:end], "\n") {
				if f := strings.Fields(line); len(f) == 4 && strings.HasPrefix(line, "Listening on ") {
					if _, err := strconv.Atoi(f[3]); err != nil {
						t.Fatalf("nc -v: port %q is not a number", f[3])
					}
					return f[3]
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"Listening on\" line from nc -v after %v: stderr %q", d, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLoopbackWithinContainer: a container with no network configuration
// reaches its own listener on 127.0.0.1.
func testLoopbackWithinContainer(t *testing.T, p *profile) {
	const token = "network-suite-loopback-ok"
	tk := newTask(t, p, []string{"/bin/looptest", token})
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	tk.createStart("", out.path, errOut.path)
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	if err != nil {
		t.Fatal("wait:", err)
	}
	out.waitClosed(t, 10*time.Second)
	if w.GetExitStatus() != 0 || !strings.Contains(out.String(), token) {
		t.Fatalf("looptest: exit %d, stdout %q, stderr %q", w.GetExitStatus(), out.String(), errOut.String())
	}
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	tk.shutdown()
}

// testHundredLayers: 100 erofs layers (files added, overlayfs whiteouts)
// stacked by the shim from the mount manager's format: the merged view
// has every added file and none whited out.
func testHundredLayers(t *testing.T, p *profile) {
	if !p.formatMounts {
		t.Skip("the layers test needs the rootfs as formatted mounts (format/mkdir/overlay over erofs layers), which this profile does not give")
	}
	const n = 100
	layers, err := layerImages(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	tk := newTaskWithMounts(t, p, rootfsMounts(t, p, layers...), []string{"/bin/forever"})
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	tk.createStart("", out.path, errOut.path)
	code, added := tk.exec("ls-added", "/bin/ls", "/added")
	if code != 0 {
		t.Fatalf("ls /added: exit %d", code)
	}
	have := map[string]bool{}
	for _, f := range strings.Fields(added) {
		have[f] = true
	}
	for k := 1; k <= n; k++ {
		if !have[fmt.Sprintf("file_%d", k)] {
			t.Fatalf("/added has no file_%d: %q", k, added)
		}
	}
	code, base := tk.exec("ls-base", "/bin/ls", "/base")
	if code != 0 || strings.TrimSpace(base) != "" {
		t.Fatalf("ls /base: exit %d, %q; want it empty (all whited out)", code, base)
	}
	tk.stop()
}
