package containerd_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/creack/pty"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/vc"
)

// vcSetup is built once per test binary: the shim, the agent and the
// guest image booted by every VM.
type vcSetup struct {
	shimDir       string // holds containerd-shim-vc-v2 (and vc-agent beside it)
	kernel        string
	initrd        string
	kernelVersion string
}

var (
	vcOnce sync.Once
	vcEnv  vcSetup
	vcErr  error
)

func dataRoot() string {
	if d := os.Getenv("VC_TEST_DATA_ROOT"); d != "" {
		return d
	}
	return "/var/lib/vc-test"
}

// setupVC builds containerd-shim-vc-v2 into bin/test (not bin/: other
// tests may run the one there) and the guest image for the agent under
// test.
func setupVC(t *testing.T) vcSetup {
	t.Helper()
	agent := testutil.AgentBinary(t)
	vcOnce.Do(func() {
		// Built as a release should be: no cgo (no libc mapped) and
		// without grpc's x/net/trace (html/template, net/http's debug
		// pages), which the task API's gRPC stubs would link in: 5.6 MB
		// less binary, about 4.5 MB less RSS per shim.
		shim, err := testutil.Build("containerd-shim-vc-v2", "./cmd/containerd-shim-vc-v2", []string{"CGO_ENABLED=0"}, "-tags", "grpcnotrace")
		if err != nil {
			vcErr = fmt.Errorf("build containerd-shim-vc-v2: %w", err)
			return
		}
		dir := filepath.Dir(shim)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		img, err := guestimage.Build(ctx, guestimage.Options{Agent: agent, Root: filepath.Join(dataRoot(), "images")})
		if err != nil {
			vcErr = fmt.Errorf("guest image: %w", err)
			return
		}
		vcEnv = vcSetup{shimDir: dir, kernel: img.Kernel, initrd: img.Initrd, kernelVersion: img.KernelVersion}
	})
	if vcErr != nil {
		t.Fatal(vcErr)
	}
	return vcEnv
}

// vcDaemon is a harness containerd whose vc runtime has a configuration
// (and a state root) of its own.
type vcDaemon struct {
	*containerd.Containerd
	setup     vcSetup
	stateRoot string
	config    string
}

// startVC starts a harness daemon with the vc shim under test; extraConfig
// is appended to the shim's configuration. At the end of the test, after
// the daemon and its shims are gone, it checks that nothing of the
// sandboxes is left: no state, no QEMU.
func startVC(t *testing.T, extraConfig string) *vcDaemon {
	t.Helper()
	return startVCWith(t, extraConfig, nil)
}

// startVCWith is startVC with plugins the harness disables by default
// loaded (containerd.Options.EnablePlugins).
func startVCWith(t *testing.T, extraConfig string, enablePlugins []string) *vcDaemon {
	t.Helper()
	return startVCDaemon(t, extraConfig, enablePlugins, nil)
}

// startVCDaemon is startVCWith with TOML that containerdConfig renders from
// the shim's directory appended to containerd's config.toml.
func startVCDaemon(t *testing.T, extraConfig string, enablePlugins []string, containerdConfig func(shimDir string) string) *vcDaemon {
	t.Helper()
	containerd.RequireRoot(t)
	s := setupVC(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	// Short: QEMU's sockets live in <state root>/<64-char CRI id>/vm.
	stateRoot := "/run/vc-t/" + hex.EncodeToString(rnd[:])
	cfgPath := filepath.Join(t.TempDir(), "vc-shim.toml")
	cfg := fmt.Sprintf("state_root = %q\ndata_root = %q\nkernel = %q\ninitrd = %q\naccel = \"tcg\"\nstop_timeout = \"5s\"\n%s\n",
		stateRoot, dataRoot(), s.kernel, s.initrd, extraConfig)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the daemon's cleanup.
	t.Cleanup(func() {
		if left := leftovers(stateRoot); left != "" {
			t.Errorf("left behind after the test: %s", left)
		}
		removeSandboxes(t, stateRoot)
	})
	var extra string
	if containerdConfig != nil {
		extra = containerdConfig(s.shimDir)
	}
	c := containerd.StartContainerd(t, containerd.Options{
		ShimDir:       s.shimDir,
		Env:           []string{"VC_SHIM_CONFIG=" + cfgPath},
		VCConfigPath:  cfgPath,
		EnablePlugins: enablePlugins,
		ExtraConfig:   extra,
	})
	c.ImportImages(t)
	return &vcDaemon{Containerd: c, setup: s, stateRoot: stateRoot, config: cfgPath}
}

// leftovers describes sandbox state and QEMU processes of stateRoot.
func leftovers(stateRoot string) string {
	var out []string
	if ents, err := os.ReadDir(stateRoot); err == nil {
		for _, e := range ents {
			out = append(out, "state "+filepath.Join(stateRoot, e.Name()))
		}
	}
	for _, pid := range qemuPids(stateRoot) {
		out = append(out, "qemu pid "+strconv.Itoa(pid))
	}
	return strings.Join(out, ", ")
}

// qemuPids are the QEMU processes whose command line mentions dir.
func qemuPids(dir string) []int {
	return proc.Find(func(args []string) bool {
		return strings.Contains(filepath.Base(args[0]), "qemu-system") && strings.Contains(strings.Join(args, "\x00"), dir+"/")
	})
}

// removeSandboxes removes what a failed test left under stateRoot, as
// `shim delete` would: VMs, the sandboxes' shared mounts, their state.
func removeSandboxes(t *testing.T, stateRoot string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ents, _ := os.ReadDir(stateRoot)
	for _, e := range ents {
		if err := vc.StopSandbox(ctx, stateRoot, e.Name(), 5*time.Second); err != nil {
			t.Logf("cleanup: stop sandbox %s: %v", e.Name(), err)
		}
		if err := vc.DeleteSandbox(ctx, stateRoot, e.Name()); err != nil {
			t.Logf("cleanup: delete sandbox %s: %v", e.Name(), err)
		}
	}
	killQEMU(stateRoot)
	for _, m := range mountsUnder(stateRoot) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if err := os.RemoveAll(stateRoot); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func killQEMU(dir string) {
	for _, pid := range qemuPids(dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// ctrRun runs `ctr run --rm` of busybox with the vc runtime and returns
// stdout, stderr and the exit code.
func (d *vcDaemon) ctrRun(t *testing.T, id string, args ...string) (string, string, int) {
	t.Helper()
	return d.ctrRunWith(t, nil, id, args...)
}

// ctrRunWith is ctrRun with more ctr run options.
func (d *vcDaemon) ctrRunWith(t *testing.T, opts []string, id string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cargs := append([]string{"run", "--rm", "--runtime", containerd.VCRuntime}, opts...)
	cmd := d.CtrCommand(ctx, append(append(cargs, images.BusyboxRef, id), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("ctr run: %v", err)
	}
	return stdout.String(), stderr.String(), code
}

// withoutCtrLogs drops ctr's own log lines (time="..." level=...) from its
// stderr, leaving the container's.
func withoutCtrLogs(s string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "time=\"") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestVCCtrRun: `ctr run --runtime io.containerd.vc.v2` boots a VM: uname
// prints the guest's kernel, not the host's; the exit status comes
// through; output written just before an immediate exit is all there.
func TestVCCtrRun(t *testing.T) {
	d := startVC(t, "")

	out, stderr, code := d.ctrRun(t, "vc-uname", "uname", "-r")
	if code != 0 {
		t.Fatalf("ctr run uname -r: exit %d, stderr %s", code, stderr)
	}
	got := strings.TrimSpace(out)
	if got != d.setup.kernelVersion {
		t.Errorf("uname -r = %q, want the guest kernel %q", got, d.setup.kernelVersion)
	}
	if got == hostKernel(t) {
		t.Errorf("uname -r = %q is the host's kernel", got)
	}

	_, _, code = d.ctrRun(t, "vc-exit", "sh", "-c", "exit 3")
	if code != 3 {
		t.Errorf("ctr run of `exit 3`: exit code %d, want 3", code)
	}

	// 4000 lines then exit at once: containerd must have them all before
	// the exit, on the right streams.
	out, stderr, code = d.ctrRun(t, "vc-out", "sh", "-c", "seq 1 4000; echo to-stderr >&2; exit 7")
	if code != 7 {
		t.Errorf("exit code %d, want 7", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4000 || lines[0] != "1" || lines[3999] != "4000" {
		t.Errorf("stdout has %d lines (%q ... %q), want 1..4000", len(lines), lines[0], lines[len(lines)-1])
	}
	if strings.TrimSpace(withoutCtrLogs(stderr)) != "to-stderr" {
		t.Errorf("stderr = %q, want to-stderr", stderr)
	}
	if left := strings.TrimSpace(d.Ctr(t, "containers", "list", "-q")); left != "" {
		t.Errorf("--rm left containers: %q", left)
	}
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after --rm: %s", left)
	}
}

// TestVCCtrTTY: `ctr run -t` under a pseudo-terminal: the process has a
// terminal of the size ctr's has, and its exit status comes through.
func TestVCCtrTTY(t *testing.T) {
	d := startVC(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := d.CtrCommand(ctx, "run", "-t", "--rm", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-tty",
		"sh", "-c", "tty; stty size; test -t 0 && echo stdin-is-a-tty; exit 5")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 31, Cols: 97})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(copied) }()
	err = cmd.Wait()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	if code := cmd.ProcessState.ExitCode(); code != 5 {
		t.Fatalf("ctr run -t: exit code %d (%v), want 5; output:\n%s", code, err, got)
	}
	for _, want := range []string{"/dev/pts/", "31 97", "stdin-is-a-tty"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, got)
		}
	}
}

// TestVCStdinCloseIO: stdin is forwarded and, once containerd closes it
// (CloseIO, as docker and nerdctl do at the end of their input; ctr never
// does), the process reads EOF and `cat` ends.
func TestVCStdinCloseIO(t *testing.T) {
	d := startVC(t, "")
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), 3*time.Minute)
	defer cancel()
	cl, err := client.New(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	img, err := cl.GetImage(ctx, images.BusyboxRef)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := cl.NewContainer(ctx, "vc-stdin",
		client.WithNewSnapshot("vc-stdin", img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sh", "-c", "cat; echo done")),
		client.WithRuntime(containerd.VCRuntime, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.Delete(context.WithoutCancel(ctx), client.WithSnapshotCleanup)
	var stdout, stderr bytes.Buffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(strings.NewReader("line one\nline two\n"), &stdout, &stderr)))
	if err != nil {
		t.Fatal(err)
	}
	defer task.Delete(context.WithoutCancel(ctx), client.WithProcessKill)
	exited, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := task.CloseIO(ctx, client.WithStdinCloser); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-exited:
		if st.ExitCode() != 0 {
			t.Errorf("exit status %d", st.ExitCode())
		}
	case <-ctx.Done():
		t.Fatal("cat did not end after CloseIO")
	}
	task.CloseIO(ctx, client.WithStdinCloser)
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); got != "line one\nline two\ndone\n" {
		t.Errorf("stdout = %q", got)
	}
}

// events follows `ctr events` for the daemon. It returns once the
// subscription is live (an event it caused has come back); the function
// it returns waits until every one of wants has been seen (at most 30 s),
// stops following and returns the /tasks/ topics seen, each with its event
// JSON, in order.
func (d *vcDaemon) events(t *testing.T) func(wants ...string) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := d.CtrCommand(ctx, "events")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []string
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
	}()
	seen := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, s) })
	}
	// ctr subscribes some time after it starts: create namespaces until
	// the event of one comes back.
	var probes []string
	waitFor(t, 30*time.Second, "ctr events to subscribe", func() bool {
		probes = append(probes, fmt.Sprintf("vc-events-probe-%d", len(probes)))
		d.Ctr(t, "namespaces", "create", probes[len(probes)-1])
		return seen("vc-events-probe-")
	})
	for _, p := range probes {
		d.Ctr(t, "namespaces", "remove", p)
	}
	return func(wants ...string) []string {
		deadline := time.Now().Add(30 * time.Second)
		missing := func() bool { return slices.ContainsFunc(wants, func(w string) bool { return !seen(w) }) }
		for missing() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		<-done
		cmd.Wait()
		var topics []string
		for _, l := range lines {
			// 2006-01-02 15:04:05.000 +0000 UTC namespace topic {json}
			if f := strings.Fields(l); len(f) >= 6 && strings.HasPrefix(f[5], "/tasks/") {
				topics = append(topics, f[5]+" "+strings.Join(f[6:], " "))
			}
		}
		return topics
	}
}

// inOrder checks that lines holds, in this order, a line starting with
// each prefix (other lines may come between).
func inOrder(t *testing.T, lines []string, prefixes ...string) {
	t.Helper()
	i := 0
	for _, l := range lines {
		if i < len(prefixes) && strings.HasPrefix(l, prefixes[i]) {
			i++
		}
	}
	if i < len(prefixes) {
		t.Errorf("events lack %q (in order %q); got:\n%s", prefixes[i], prefixes, strings.Join(lines, "\n"))
	}
}

// TestVCCtrTaskLifecycle: a detached task, exec into it, pause and resume,
// metrics, kill, delete; the events come in containerd's order.
func TestVCCtrTaskLifecycle(t *testing.T) {
	d := startVC(t, "")
	stop := d.events(t)
	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-life", "sh", "-c", "echo $$ > /tmp/init; exec sleep 1000")

	if ls := d.Ctr(t, "task", "ls"); !regexpMatch(`vc-life\s+\d+\s+RUNNING`, ls) {
		t.Fatalf("task ls:\n%s", ls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := d.CtrCommand(ctx, "task", "exec", "--exec-id", "e1", "vc-life", "sh", "-c", "uname -r; cat /tmp/init; echo oops >&2; exit 4")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("task exec exit code %d, want 4 (stderr %s)", code, stderr.String())
	}
	if got := stdout.String(); got != d.setup.kernelVersion+"\n1\n" {
		t.Errorf("exec stdout = %q, want the guest kernel and the init's pid 1", got)
	}
	if got := strings.TrimSpace(withoutCtrLogs(stderr.String())); got != "oops" {
		t.Errorf("exec stderr = %q", got)
	}

	// A second exec with the same id after the first was deleted works;
	// two running at once each get their own output.
	out := d.Ctr(t, "task", "exec", "--exec-id", "e1", "vc-life", "echo", "again")
	if out != "again\n" {
		t.Errorf("second exec: %q", out)
	}

	// Exec'd processes leave nothing open in the shim once deleted.
	shims := d.shimPids()
	if len(shims) != 1 {
		t.Fatalf("shims: %v", shims)
	}
	fds := func() int { ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", shims[0])); return len(ents) }
	before := fds()
	for i := 0; i < 5; i++ {
		d.Ctr(t, "task", "exec", "--exec-id", fmt.Sprintf("loop%d", i), "vc-life", "true")
	}
	if after := fds(); after > before+1 {
		t.Errorf("the shim's open files went from %d to %d over 5 execs", before, after)
	}

	d.Ctr(t, "task", "pause", "vc-life")
	if ls := d.Ctr(t, "task", "ls"); !regexpMatch(`vc-life\s+\d+\s+PAUSED`, ls) {
		t.Errorf("after pause, task ls:\n%s", ls)
	}
	d.Ctr(t, "task", "resume", "vc-life")
	if ls := d.Ctr(t, "task", "ls"); !regexpMatch(`vc-life\s+\d+\s+RUNNING`, ls) {
		t.Errorf("after resume, task ls:\n%s", ls)
	}

	m := d.Ctr(t, "task", "metrics", "vc-life")
	if !regexpMatch(`memory\.usage_in_bytes\s+[1-9]\d*`, m) || !regexpMatch(`cpuacct\.usage\s+[1-9]\d*`, m) {
		t.Errorf("task metrics:\n%s", m)
	}
	if ps := d.Ctr(t, "task", "ps", "vc-life"); !regexpMatch(`\d+`, ps) {
		t.Errorf("task ps:\n%s", ps)
	}

	// pid 1 of its namespace ignores SIGTERM without a handler; SIGKILL
	// to every process.
	d.Ctr(t, "task", "kill", "--all", "--signal", "SIGKILL", "vc-life")
	deadline := time.Now().Add(30 * time.Second)
	for !regexpMatch(`vc-life\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls")) {
		if time.Now().After(deadline) {
			t.Fatalf("task not stopped after SIGKILL:\n%s", d.Ctr(t, "task", "ls"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := d.CtrErr(ctx, "task", "kill", "vc-life"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("kill of a stopped task: %v, want not found", err)
	}
	d.Ctr(t, "task", "delete", "vc-life")
	d.Ctr(t, "container", "delete", "vc-life")
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after delete: %s", left)
	}

	ev := stop("/tasks/delete")
	inOrder(t, ev,
		"/tasks/create", "/tasks/start",
		"/tasks/exec-added", "/tasks/exec-started", `/tasks/exit {"container_id":"vc-life","id":"e1"`,
		"/tasks/paused", "/tasks/resumed",
		`/tasks/exit {"container_id":"vc-life","id":"vc-life"`, "/tasks/delete")
	for _, l := range ev {
		if strings.HasPrefix(l, `/tasks/exit {"container_id":"vc-life","id":"vc-life"`) && !strings.Contains(l, `"exit_status":137`) {
			t.Errorf("init exit event: %s, want exit_status 137", l)
		}
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// shimPids are the vc shims serving the daemon.
func (d *vcDaemon) shimPids() []int { return vcShimPids(d.Address) }

// vcShimPids are the vc shims serving the daemon at address.
func vcShimPids(address string) []int {
	return proc.Find(func(args []string) bool {
		return filepath.Base(args[0]) == "containerd-shim-vc-v2" && slices.Contains(args, address)
	})
}

// waitNoShims waits until the daemon's vc shims have exited.
func (d *vcDaemon) waitNoShims(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(d.shimPids()) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("vc shims still running: %v", d.shimPids())
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	mps, _ := mount.Under(dir)
	return mps
}

// TestVCBadSpec: a spec the shim cannot run fails the task's creation
// with the field named, and leaves nothing behind: no VM, no sandbox
// state, no mounts, no shim.
func TestVCBadSpec(t *testing.T) {
	d := startVC(t, `enable_annotations = ["cpus"]`)
	rootfs := t.TempDir()
	for _, tc := range []struct {
		name   string
		args   []string
		errHas string
	}{
		{"unknown annotation", []string{"--annotation", "io.virtcontainers.bogus=1", images.BusyboxRef, "bad1", "true"}, "annotation io.virtcontainers.bogus: unknown"},
		{"annotation not allowed", []string{"--annotation", "io.virtcontainers.memory_mib=512", images.BusyboxRef, "bad2", "true"}, "annotation io.virtcontainers.memory_mib: not allowed"},
		{"bad annotation value", []string{"--annotation", "io.virtcontainers.cpus=zero", images.BusyboxRef, "bad3", "true"}, `annotation io.virtcontainers.cpus "zero"`},
		{"unknown container type", []string{"--annotation", "io.kubernetes.cri.container-type=podsandbox", images.BusyboxRef, "bad4", "true"}, `annotation io.kubernetes.cri.container-type "podsandbox": unknown value`},
		{"missing rootfs", []string{"--rootfs", "/nonexistent/rootfs", "bad5", "true"}, `spec.root.path "/nonexistent/rootfs"`},
		{"no process args", []string{"--rootfs", rootfs, "bad6"}, "spec.process.args: empty"},
		// Found only after the VM booted: the VM goes too.
		{"missing bind source", []string{"--mount", "type=bind,src=/nonexistent/src,dst=/x,options=rbind", images.BusyboxRef, "bad7", "true"}, `source "/nonexistent/src" (destination /x)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := d.CtrErr(ctx, append([]string{"run", "--rm", "--runtime", containerd.VCRuntime}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("ctr run: %v (out %q), want an error containing %q", err, out, tc.errHas)
			}
			d.waitNoShims(t)
			if left := leftovers(d.stateRoot); left != "" {
				t.Errorf("left behind: %s", left)
			}
			if m := mountsUnder(d.State); len(m) > 0 {
				t.Errorf("mounts left: %q", m)
			}
			if ls := strings.TrimSpace(d.Ctr(t, "task", "ls", "-q")); ls != "" {
				t.Errorf("tasks left: %q", ls)
			}
			// ctr run --rm removes the container only after a task ran.
			d.CtrErr(ctx, "container", "delete", tc.args[len(tc.args)-2])
			d.CtrErr(ctx, "container", "delete", tc.args[len(tc.args)-1])
		})
	}
}

// TestVCAnnotations: allowlisted io.virtcontainers.* annotations size the
// VM, and so do the container's own limits; without them the
// configuration's defaults hold.
func TestVCAnnotations(t *testing.T) {
	d := startVC(t, `enable_annotations = ["cpus", "memory_mib"]`+"\nmemory_mib = 200")
	script := "nproc; sed -n 's/MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"
	vm := func(opts ...string) (int, int) {
		t.Helper()
		out, stderr, code := d.ctrRunWith(t, opts, "vc-ann", "sh", "-c", script)
		f := strings.Fields(out)
		if code != 0 || len(f) != 2 {
			t.Fatalf("ctr run %q: exit %d, out %q, stderr %s", opts, code, out, stderr)
		}
		cpus, _ := strconv.Atoi(f[0])
		memKB, _ := strconv.Atoi(f[1])
		return cpus, memKB / 1024
	}
	cpus, mem := vm()
	if cpus != 1 || mem > 200 || mem < 120 {
		t.Errorf("defaults: %d cpus, %d MiB; want 1 and at most 200", cpus, mem)
	}
	cpus, mem = vm("--annotation", "io.virtcontainers.cpus=2", "--annotation", "io.virtcontainers.memory_mib=400")
	if cpus != 2 || mem > 400 || mem <= 200 {
		t.Errorf("annotated: %d cpus, %d MiB; want 2 and more than 200, at most 400", cpus, mem)
	}
	// The container's own limits grow the VM (pod_sizing), so they fit.
	cpus, mem = vm("--cpus", "1", "--memory-limit", "134217728")
	if cpus != min(2, runtime.NumCPU()) || mem <= 200 || mem > 328 {
		t.Errorf("--cpus 1 --memory-limit 128 MiB: %d cpus, %d MiB; want %d and more than 200, at most 328", cpus, mem, min(2, runtime.NumCPU()))
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestVCVMCrash: the VM dies under a running task and an exec'd process
// (QEMU killed): both exit non-zero, their exit events fire (the exec's
// first), and deleting the task removes everything.
func TestVCVMCrash(t *testing.T) {
	d := startVC(t, "")
	stop := d.events(t)
	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-crash", "sleep", "1000")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	exec := d.CtrCommand(ctx, "task", "exec", "--exec-id", "e1", "vc-crash", "sleep", "1000")
	if err := exec.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the exec to run", func() bool {
		return strings.Contains(d.Ctr(t, "task", "ps", "vc-crash"), "e1")
	})
	pids := qemuPids(d.stateRoot)
	if len(pids) != 1 {
		t.Fatalf("qemu processes: %v, want one", pids)
	}
	syscall.Kill(pids[0], syscall.SIGKILL)

	waitFor(t, time.Minute, "the task to stop", func() bool {
		return regexpMatch(`vc-crash\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls"))
	})
	exec.Wait()
	if code := exec.ProcessState.ExitCode(); code == 0 {
		t.Errorf("exec in the dead VM: exit code 0, want non-zero")
	}
	d.Ctr(t, "task", "delete", "vc-crash")
	d.Ctr(t, "container", "delete", "vc-crash")
	d.waitNoShims(t)
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after delete: %s", left)
	}
	if m := mountsUnder(d.State); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	ev := stop("/tasks/delete")
	inOrder(t, ev, `/tasks/exit {"container_id":"vc-crash","id":"e1"`, `/tasks/exit {"container_id":"vc-crash","id":"vc-crash"`, "/tasks/delete")
	for _, l := range ev {
		if strings.HasPrefix(l, "/tasks/exit") && (!strings.Contains(l, `"exit_status":`) || strings.Contains(l, `"exit_status":0`)) {
			t.Errorf("exit event with a zero status: %s", l)
		}
	}
}

// TestVCShimCrash: the shim dies (SIGKILL) while its VM runs; containerd
// runs `containerd-shim-vc-v2 delete`, which stops the VM and removes the
// sandbox's state and the rootfs mount from what is on disk.
func TestVCShimCrash(t *testing.T) {
	d := startVC(t, "")
	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-shimcrash", "sleep", "1000")
	shims := d.shimPids()
	if len(shims) != 1 || len(qemuPids(d.stateRoot)) != 1 {
		t.Fatalf("shims %v, qemu %v: want one each", shims, qemuPids(d.stateRoot))
	}
	rootfs := filepath.Join(d.State, "io.containerd.runtime.v2.task", "default", "vc-shimcrash", "rootfs")
	if !slices.Contains(mountsUnder(d.State), rootfs) {
		t.Fatalf("rootfs %s not mounted: %q", rootfs, mountsUnder(d.State))
	}
	syscall.Kill(shims[0], syscall.SIGKILL)
	waitFor(t, time.Minute, "containerd to clean up after the dead shim", func() bool {
		return leftovers(d.stateRoot) == "" && len(mountsUnder(d.State)) == 0
	})
	waitFor(t, 30*time.Second, "the task to go", func() bool {
		return !strings.Contains(d.Ctr(t, "task", "ls"), "RUNNING")
	})
	d.CtrErr(context.Background(), "task", "delete", "vc-shimcrash")
	d.Ctr(t, "container", "delete", "vc-shimcrash")
}

// TestVCOOM: a container that runs out of its memory limit in the guest
// is OOM-killed: exit status 137 and a TaskOOM event (the shim follows
// the agent's OOM events).
func TestVCOOM(t *testing.T) {
	d := startVC(t, "")
	stop := d.events(t)
	_, stderr, code := d.ctrRunWith(t, []string{"--memory-limit", "33554432"}, "vc-oom", "sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
	if code != 137 {
		t.Errorf("exit code %d (stderr %s), want 137", code, stderr)
	}
	ev := stop("/tasks/oom", `/tasks/exit {"container_id":"vc-oom","id":"vc-oom"`)
	inOrder(t, ev, `/tasks/oom {"container_id":"vc-oom"}`)
	inOrder(t, ev, `/tasks/exit {"container_id":"vc-oom","id":"vc-oom"`)
}

// TestVCLogURIAndUpdate: file:// and binary:// log URIs as runc-v2 takes
// them, and Update changes a running container's memory limit in the
// guest.
func TestVCLogURIAndUpdate(t *testing.T) {
	d := startVC(t, "")
	dir := t.TempDir()
	fileLog := filepath.Join(dir, "file.log")
	d.Ctr(t, "run", "-d", "--log-uri", "file://"+fileLog, "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-file", "sh", "-c", "echo to-out; echo to-err >&2; exec sleep 1000")

	logger := filepath.Join(dir, "logger.sh")
	binLog := filepath.Join(dir, "binary.log")
	script := "#!/bin/sh\nexec 5>&-\n{ echo \"args $* id $CONTAINER_ID ns $CONTAINER_NAMESPACE\"; cat <&3 & cat <&4 & wait; } > " + binLog + "\n"
	if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d.Ctr(t, "run", "-d", "--log-uri", "binary://"+logger+"?tag=t1", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-binary", "sh", "-c", "echo bin-out; echo bin-err >&2; exec sleep 1000")

	has := func(path string, wants ...string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(path)
			for _, w := range wants {
				if !strings.Contains(string(b), w) {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 30*time.Second, "file:// log", has(fileLog, "to-out\n", "to-err\n"))
	waitFor(t, 30*time.Second, "binary:// log", has(binLog, "args tag t1 id vc-binary ns default", "bin-out\n", "bin-err\n"))

	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), 2*time.Minute)
	defer cancel()
	cl, err := client.New(d.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctr, err := cl.LoadContainer(ctx, "vc-file")
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	limit := int64(96 << 20)
	if err := task.Update(ctx, client.WithResources(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})); err != nil {
		t.Fatalf("Update: %v", err)
	}
	// The guest cgroup's limit, as the task's metrics report it.
	if m := d.Ctr(t, "task", "metrics", "vc-file"); !regexpMatch(`memory\.limit_in_bytes\s+`+strconv.FormatInt(limit, 10)+`\b`, m) {
		t.Errorf("metrics after Update lack memory.limit_in_bytes %d:\n%s", limit, m)
	}
	for _, id := range []string{"vc-file", "vc-binary"} {
		d.Ctr(t, "task", "kill", "-s", "SIGKILL", id)
	}
	for _, id := range []string{"vc-file", "vc-binary"} {
		waitFor(t, 30*time.Second, id+" to stop", func() bool {
			return regexpMatch(id+`\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls"))
		})
		d.Ctr(t, "task", "delete", id)
		d.Ctr(t, "container", "delete", id)
	}
}

// TestVCExecTTY: `ctr task exec -t` under a pseudo-terminal: the exec'd
// process has a terminal that gets ctr's size. ctr sends the size only
// after Start has returned (HandleConsoleResize), when the process runs
// already, under runc too: a program that reads it at once may see no
// size yet and is told by SIGWINCH; the script waits for it (at most 5 s).
func TestVCExecTTY(t *testing.T) {
	d := startVC(t, "")
	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-exectty", "sleep", "1000")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := d.CtrCommand(ctx, "task", "exec", "-t", "--exec-id", "t1", "vc-exectty", "sh", "-c", "for i in $(seq 50); do stty size 2>/dev/null | grep -qv '^0 0$' && break; sleep 0.1; done; stty size; tty; exit 2")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 42, Cols: 121})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(copied) }()
	cmd.Wait()
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	got := strings.ReplaceAll(out.String(), "\r", "")
	if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(got, "42 121") || !strings.Contains(got, "/dev/pts/") {
		t.Errorf("exec -t: exit %d, output %q; want 2 and a 42x121 terminal", code, got)
	}
	d.Ctr(t, "task", "kill", "-s", "SIGKILL", "vc-exectty")
	waitFor(t, 30*time.Second, "the task to stop", func() bool {
		return regexpMatch(`vc-exectty\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls"))
	})
	d.Ctr(t, "task", "delete", "vc-exectty")
	d.Ctr(t, "container", "delete", "vc-exectty")
}

// containerd16Config runs Debian's containerd 1.6 privately under dir.
const containerd16Config = `version = 2
root = "%[1]s/root"
state = "%[1]s/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "%[1]s/containerd.sock"
[ttrpc]
  address = "%[1]s/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/opt"
`

// TestVCContainerd16: the shim under Debian 12's containerd 1.6 (task API
// v2, the address printed by `start`, the address file for a restart):
// run, exit codes, exec, containerd restarted under a running task, kill,
// delete. It needs the 1.6 binaries, which hack/install-containerd.sh
// (make containerd, which make test runs) unpacks without installing them;
// VC_TEST_CONTAINERD16 names another directory holding containerd and ctr.
func TestVCContainerd16(t *testing.T) {
	bin := os.Getenv("VC_TEST_CONTAINERD16")
	if bin == "" {
		bin = filepath.Join(filepath.Dir(containerd.BinDir()), "containerd16", "usr", "bin")
	}
	if _, err := os.Stat(filepath.Join(bin, "containerd")); err != nil {
		testenv.Skipf(t, "skipped: no containerd 1.6 in %s (run make containerd, or set VC_TEST_CONTAINERD16): %v", bin, err)
	}
	containerd.RequireRoot(t)
	s := setupVC(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	dir := "/run/vc-t16-" + hex.EncodeToString(rnd[:])
	address := dir + "/containerd.sock"
	stateRoot := dir + "/vc"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("state_root = %q\nkernel = %q\ninitrd = %q\naccel = \"tcg\"\nstop_timeout = \"5s\"\n", stateRoot, s.kernel, s.initrd)
	os.WriteFile(dir+"/shim.toml", []byte(cfg), 0o600)
	os.WriteFile(dir+"/config.toml", []byte(fmt.Sprintf(containerd16Config, dir)), 0o600)
	env := append(os.Environ(), "PATH="+s.shimDir+":"+bin+":/usr/sbin:/usr/bin:/sbin:/bin", "VC_SHIM_CONFIG="+dir+"/shim.toml")

	var daemon *exec.Cmd
	start := func() {
		t.Helper()
		logf, err := os.OpenFile(dir+"/containerd.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		daemon = exec.Command(filepath.Join(bin, "containerd"), "--config", dir+"/config.toml")
		daemon.Env, daemon.Stdout, daemon.Stderr = env, logf, logf
		daemon.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := daemon.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "containerd 1.6 to serve", func() bool {
			_, err := os.Stat(address)
			return err == nil
		})
	}
	stop := func() {
		if daemon != nil && daemon.Process != nil {
			daemon.Process.Signal(syscall.SIGTERM)
			daemon.Wait()
		}
	}
	ctr := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "ctr"), append([]string{"--address", address}, args...)...)
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := ctr(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(dir + "/containerd.log")
			t.Logf("containerd 1.6 log:\n%s", b)
		}
		for _, id := range []string{"c16", "c16-exit", "c16-d"} {
			ctr("task", "kill", "-s", "SIGKILL", id)
			ctr("task", "delete", "-f", id)
			ctr("container", "delete", id)
		}
		stop()
		for _, pid := range vcShimPids(address) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("shim %d left running", pid)
		}
		if left := leftovers(stateRoot); left != "" {
			t.Errorf("left behind: %s", left)
		}
		killQEMU(stateRoot)
		for _, m := range mountsUnder(dir) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	start()
	os.MkdirAll(dir+"/images", 0o700)
	paths, err := images.WriteAll(dir + "/images")
	if err != nil {
		t.Fatal(err)
	}
	must("images", "import", "--platform", "linux/amd64", paths[images.BusyboxRef])

	out := must("run", "--rm", "--runtime", containerd.VCRuntime, images.BusyboxRef, "c16", "uname", "-r")
	if strings.TrimSpace(out) != s.kernelVersion {
		t.Errorf("uname -r under containerd 1.6: %q, want %q", out, s.kernelVersion)
	}
	if _, err := ctr("run", "--rm", "--runtime", containerd.VCRuntime, images.BusyboxRef, "c16-exit", "sh", "-c", "exit 3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("exit 3 under containerd 1.6: %v", err)
	}
	must("run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "c16-d", "sleep", "1000")
	if out := must("task", "exec", "--exec-id", "e1", "c16-d", "echo", "exec-ok"); out != "exec-ok\n" {
		t.Errorf("exec: %q", out)
	}
	stop()
	start()
	if ls := must("task", "ls"); !regexpMatch(`c16-d\s+\d+\s+RUNNING`, ls) {
		t.Fatalf("after restarting containerd 1.6: %s", ls)
	}
	if out := must("task", "exec", "--exec-id", "e2", "c16-d", "echo", "after-restart"); out != "after-restart\n" {
		t.Errorf("exec after restart: %q", out)
	}
	must("task", "kill", "-s", "SIGKILL", "c16-d")
	waitFor(t, 30*time.Second, "the task to stop", func() bool {
		return regexpMatch(`c16-d\s+\d+\s+STOPPED`, must("task", "ls"))
	})
	must("task", "delete", "c16-d")
	must("container", "delete", "c16-d")
	waitFor(t, 20*time.Second, "the shims to exit", func() bool { return len(vcShimPids(address)) == 0 })
	if left := leftovers(stateRoot); left != "" {
		t.Errorf("after delete: %s", left)
	}
}
