// Package shimtest is a shim conformance suite: it drives a containerd
// shim binary the way containerd does (the start helper with bootstrap
// parameters on stdin, the task API v3 over ttrpc, events forwarded to a
// ttrpc Events service, `shim delete` at the end), without containerd,
// and checks what containerd relies on. Its suites and their tests follow
// containerd's own shim conformance suite, containerd/shimtest (run,
// exec, oom, net, layers), which the Go module proxy reachable here does
// not serve; see README.md beside this file for what differs.
//
// It runs against containerd-shim-vc-v2 and, as the proof that the
// harness asks nothing a conforming shim does not do, against
// containerd-shim-runc-v2 v2.3.1 (hack/install-containerd.sh).
package shimtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	runcopt "github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/fifo"
	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
)

func init() {
	// As containerd registers them (core/runtime): exec specs travel as
	// an Any of this type.
	typeurl.Register(&specs.Process{}, "types.containerd.io", "opencontainers/runtime-spec", "1", "Process")
}

// profile is a shim under test and how to drive it.
type profile struct {
	name string
	// bin is the shim binary; its directory goes first on PATH (runc's
	// shim finds runc there).
	bin string
	env []string
	// formatMounts gives the rootfs as containerd's mount manager formats
	// it (erofs layers, an ext4 scratch image, format/mkdir/overlay), for
	// the shim to activate; otherwise as a mounted-ready overlay of a
	// directory, as the overlayfs snapshotter gives it.
	formatMounts bool
	// skip names tests ("Suite/Test") not applicable to this shim, and why.
	skip map[string]string
	// after runs once the profile's tests are done (leak checks).
	after func(t *testing.T)
}

// images are the read-only parts of the test rootfs, built once.
type images struct {
	dir       string // the rootfs as a directory (overlay lower)
	erofs     string // the same as an erofs image
	dataDir   string // a second lower layer: /data/bigfile
	dataErofs string // the same as an erofs image
	bigfile   string // that file on the host (BindMountRead mounts it)
	bigCRC    string // its crc32c, hex
	mkfsExt4  string
	buildOnce sync.Once
	err       error
}

var testImages images

// rootfsImages builds the testbin and the rootfs images once.
func rootfsImages(t *testing.T) *images {
	t.Helper()
	im := &testImages
	im.buildOnce.Do(func() { im.err = im.build() })
	if im.err != nil {
		t.Fatal(im.err)
	}
	return im
}

// testbinCommands are the names testbin answers to, linked in /bin.
var testbinCommands = []string{"forever", "exit", "echo", "cat", "date", "tickexit", "burstexit", "memhog", "ls", "crc32c", "nc", "looptest"}

func (im *images) build() error {
	dir, err := os.MkdirTemp("", "shimtest-images-")
	if err != nil {
		return err
	}
	im.dir = filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "dev", "etc", "proc", "run", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(im.dir, d), 0o755); err != nil {
			return err
		}
	}
	bin := filepath.Join(im.dir, "bin", "testbin")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./testbin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build testbin: %w: %s", err, out)
	}
	for _, c := range testbinCommands {
		if err := os.Symlink("testbin", filepath.Join(im.dir, "bin", c)); err != nil {
			return err
		}
	}
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/forever\n", "etc/group": "root:x:0:\n",
		"etc/hostname": "shimtest\n", "etc/hosts": "127.0.0.1\tlocalhost\n", "etc/resolv.conf": "",
	} {
		if err := os.WriteFile(filepath.Join(im.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	im.erofs = filepath.Join(dir, "rootfs.erofs")
	if err := erofsFromDir(im.erofs, im.dir); err != nil {
		return err
	}
	im.dataDir = filepath.Join(dir, "data-layer")
	if err := os.MkdirAll(filepath.Join(im.dataDir, "data"), 0o755); err != nil {
		return err
	}
	im.bigfile = filepath.Join(im.dataDir, "data", "bigfile")
	if im.bigCRC, err = writeTiled(im.bigfile, bigFileSize); err != nil {
		return err
	}
	im.dataErofs = filepath.Join(dir, "data.erofs")
	if err := erofsFromDir(im.dataErofs, im.dataDir); err != nil {
		return err
	}
	im.mkfsExt4, _ = exec.LookPath("mkfs.ext4")
	return nil
}

// rootfsMounts describes the rootfs of one container, as containerd
// would: a ready overlay, or (formatMounts) the mount manager's format
// with the given erofs layers (top first) above the rootfs and data images.
func rootfsMounts(t *testing.T, p *profile, layers ...string) []*types.Mount {
	t.Helper()
	im := rootfsImages(t)
	dir := t.TempDir()
	if !p.formatMounts {
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		os.Mkdir(upper, 0o755)
		os.Mkdir(work, 0o755)
		return []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"index=off", "workdir=" + work, "upperdir=" + upper, "lowerdir=" + im.dir + ":" + im.dataDir,
		}}}
	}
	if im.mkfsExt4 == "" {
		testenv.Skip(t, "formatted rootfs mounts need mkfs.ext4 (e2fsprogs) for the scratch image")
	}
	scratch := filepath.Join(dir, "scratch.ext4")
	if err := os.WriteFile(scratch, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(scratch, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(im.mkfsExt4, "-q", "-F", scratch).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mounts := []*types.Mount{{Type: "ext4", Source: scratch, Options: []string{"rw", "loop"}}}
	var lowers []string
	for i, img := range append(slices.Clone(layers), im.erofs, im.dataErofs) {
		mounts = append(mounts, &types.Mount{Type: "erofs", Source: img, Options: []string{"ro", "loop"}})
		lowers = append(lowers, fmt.Sprintf("{{ mount %d }}", i+1))
	}
	return append(mounts, &types.Mount{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
		"X-containerd.mkdir.path={{ mount 0 }}/upper:0755",
		"X-containerd.mkdir.path={{ mount 0 }}/work:0755",
		"workdir={{ mount 0 }}/work", "upperdir={{ mount 0 }}/upper",
		"lowerdir=" + strings.Join(lowers, ":"),
	}})
}

// randomHex is a short random suffix.
func randomHex() string {
	var b [4]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b[:])
}

// shortTempDir is a directory for unix sockets, whose paths are short.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "st-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// envelope is an event the shim published.
type envelope struct {
	Topic, Namespace string
	Event            *anypb.Any
}

// eventsRecorder is containerd's ttrpc Events service, as the shim
// publishes to it: it records what is forwarded.
type eventsRecorder struct {
	mu     sync.Mutex
	got    []envelope
	notify chan struct{}
}

func (r *eventsRecorder) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	e := req.GetEnvelope()
	r.mu.Lock()
	r.got = append(r.got, envelope{Topic: e.GetTopic(), Namespace: e.GetNamespace(), Event: e.GetEvent()})
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return &emptypb.Empty{}, nil
}

func (r *eventsRecorder) topics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.got {
		out = append(out, e.Topic)
	}
	return out
}

// waitFor returns the first event of topic, waiting up to d.
func (r *eventsRecorder) waitFor(topic string, d time.Duration) *envelope {
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		for i := range r.got {
			if r.got[i].Topic == topic {
				e := r.got[i]
				r.mu.Unlock()
				return &e
			}
		}
		r.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		select {
		case <-r.notify:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
}

// startEvents serves the Events service on a unix socket.
func startEvents(t *testing.T, dir string) (*eventsRecorder, string) {
	t.Helper()
	addr := filepath.Join(dir, "events.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	rec := &eventsRecorder{notify: make(chan struct{}, 1)}
	eventsapi.RegisterTTRPCEventsService(srv, rec)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return rec, addr
}

// task is one container of one shim, driven as containerd drives it.
type task struct {
	t      *testing.T
	p      *profile
	id, ns string
	bundle string
	ctx    context.Context
	events *eventsRecorder
	tc     taskAPI.TTRPCTaskService
	client *ttrpc.Client
	mounts []*types.Mount
}

// newTask writes the bundle (spec with args, opts applied) and starts the
// shim for it, as containerd's runtime v2 does before Create.
func newTask(t *testing.T, p *profile, args []string, opts ...func(*specs.Spec)) *task {
	t.Helper()
	return newTaskWithMounts(t, p, rootfsMounts(t, p), args, opts...)
}

func newTaskWithMounts(t *testing.T, p *profile, mounts []*types.Mount, args []string, opts ...func(*specs.Spec)) *task {
	t.Helper()
	bundle, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountRecursive(rootfs, 0) })
	spec := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}}},
	}
	for _, o := range opts {
		o(&spec)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	tk := &task{
		t: t, p: p, bundle: bundle, mounts: mounts,
		id: strings.Trim(name, "-") + "-" + randomHex(),
		ns: "shimtest-" + randomHex(),
	}
	tk.ctx = namespaces.WithNamespace(t.Context(), tk.ns)
	sockDir := shortTempDir(t)
	var eventsAddr string
	tk.events, eventsAddr = startEvents(t, sockDir)
	address := tk.start(eventsAddr, sockDir)
	conn, err := dialRetry(address, 10*time.Second)
	if err != nil {
		t.Fatalf("connect to the shim at %s: %v", address, err)
	}
	// Closed by start's teardown, after it used it.
	tk.client = ttrpc.NewClient(conn)
	tk.tc = taskAPI.NewTTRPCTaskClient(tk.client)
	return tk
}

// start runs `shim start` with bootstrap parameters on stdin, as
// containerd 2.3 does, and returns the address it answers. Cleanup shuts
// the shim down and runs `shim delete`, as containerd does.
func (tk *task) start(eventsAddr, sockDir string) string {
	t := tk.t
	logs := tk.captureLog()
	params := &bootapi.BootstrapParams{
		InstanceID:             tk.id,
		Namespace:              tk.ns,
		ContainerdGrpcAddress:  eventsAddr,
		ContainerdTtrpcAddress: eventsAddr,
		SocketDir:              &sockDir,
	}
	in, err := proto.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tk.p.bin, "-namespace", tk.ns, "-id", tk.id, "-address", eventsAddr, "start")
	cmd.Dir = tk.bundle
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = append(os.Environ(), "TTRPC_ADDRESS="+eventsAddr, "PATH="+filepath.Dir(tk.p.bin)+":"+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, tk.p.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shim start: %v\nstderr: %s", err, stderr.String())
	}
	// A 2.3 shim answers a BootstrapResult; containerd also takes JSON.
	var res bootapi.BootstrapResult
	if err := proto.Unmarshal(stdout.Bytes(), &res); err != nil || res.GetAddress() == "" {
		var j struct {
			Version  int32  `json:"version"`
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &j); err != nil || j.Address == "" {
			t.Fatalf("shim start answered %q: neither a BootstrapResult nor JSON bootstrap parameters", stdout.String())
		}
		res = bootapi.BootstrapResult{Version: j.Version, Address: j.Address, Protocol: j.Protocol}
	}
	if res.GetVersion() != 3 || res.GetProtocol() != "ttrpc" {
		t.Fatalf("shim start: version %d protocol %q; want task API 3 over ttrpc", res.GetVersion(), res.GetProtocol())
	}
	t.Cleanup(func() {
		// containerd's teardown of a task, whatever the test did (ctr
		// task rm --force): kill and wait for the init process, delete it,
		// shut the shim down, `shim delete`. (The test's context is over
		// by now.)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(tk.ctx), 30*time.Second)
		tk.tc.Kill(ctx, &taskAPI.KillRequest{ID: tk.id, Signal: uint32(syscall.SIGKILL), All: true})
		tk.tc.Wait(ctx, &taskAPI.WaitRequest{ID: tk.id})
		if _, err := tk.tc.Delete(ctx, &taskAPI.DeleteRequest{ID: tk.id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) && !errdefs.IsNotFound(errgrpc.ToNative(err)) {
			t.Logf("teardown: delete %s: %v", tk.id, err)
		}
		cancel()
		tk.shutdown()
		if tk.client != nil {
			tk.client.Close()
		}
		tk.deleteShim()
		tk.checkGone()
		if t.Failed() {
			t.Logf("shim log:\n%s", logs())
		}
	})
	return strings.TrimPrefix(res.GetAddress(), "unix://")
}

// captureLog reads the shim's log FIFO in the bundle, as containerd does.
func (tk *task) captureLog() func() string {
	path := filepath.Join(tk.bundle, "log")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		tk.t.Fatal(err)
	}
	f, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		tk.t.Fatal(err)
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	go func() {
		b := make([]byte, 32<<10)
		for {
			n, err := f.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	tk.t.Cleanup(func() { f.Close() })
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
}

// shutdown asks the shim to exit, bounded as containerd bounds it.
func (tk *task) shutdown() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(tk.ctx), 30*time.Second)
	defer cancel()
	tk.tc.Shutdown(ctx, &taskAPI.ShutdownRequest{ID: tk.id})
}

// deleteShim is containerd's cleanup after a shim: `shim delete`.
func (tk *task) deleteShim() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tk.p.bin, "-namespace", tk.ns, "-id", tk.id, "-bundle", tk.bundle, "-address", "/nonexistent", "delete")
	cmd.Dir = tk.bundle
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(tk.p.bin)+":"+os.Getenv("PATH"))
	cmd.Env = append(cmd.Env, tk.p.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		tk.t.Logf("shim delete: %v: %s", err, out)
	}
}

// checkGone fails the test if the shim process outlives it.
func (tk *task) checkGone() {
	mine := func(args []string) bool {
		return len(args) > 0 && filepath.Base(args[0]) == filepath.Base(tk.p.bin) && slices.Contains(args, tk.ns)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := proc.Find(mine)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tk.t.Errorf("shim process(es) %v of namespace %s left running after shutdown and delete", left, tk.ns)
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialRetry connects to the shim's socket.
func dialRetry(addr string, d time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("unix", addr)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createRequest is the CreateTaskRequest containerd sends, with runc's
// options (the vc shim ignores them).
func (tk *task) createRequest(stdin, stdout, stderr string) *taskAPI.CreateTaskRequest {
	a, err := typeurl.MarshalAnyToProto(&runcopt.Options{SystemdCgroup: false})
	if err != nil {
		tk.t.Fatal(err)
	}
	return &taskAPI.CreateTaskRequest{
		ID: tk.id, Bundle: tk.bundle, Rootfs: tk.mounts,
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
		Options: &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()},
	}
}

// create and start the init process.
func (tk *task) createStart(stdin, stdout, stderr string) {
	tk.t.Helper()
	if _, err := tk.tc.Create(tk.ctx, tk.createRequest(stdin, stdout, stderr)); err != nil {
		tk.t.Fatal("create:", err)
	}
	if _, err := tk.tc.Start(tk.ctx, &taskAPI.StartRequest{ID: tk.id}); err != nil {
		tk.t.Fatal("start:", err)
	}
}

// startTask starts a shim for a container running args, creates and
// starts it with its stdout and stderr on FIFOs in the bundle.
func startTask(t *testing.T, p *profile, args []string, opts ...func(*specs.Spec)) (*task, *output, *output) {
	t.Helper()
	tk := newTask(t, p, args, opts...)
	out := newOutput(t, tk.bundle, "stdout")
	errOut := newOutput(t, tk.bundle, "stderr")
	tk.createStart("", out.path, errOut.path)
	return tk, out, errOut
}

// stop kills, waits for and deletes the init process, then shuts the
// shim down.
func (tk *task) stop() {
	tk.tc.Kill(tk.ctx, &taskAPI.KillRequest{ID: tk.id, Signal: uint32(syscall.SIGKILL), All: true})
	tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id})
	tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id})
	tk.shutdown()
}

// output is a FIFO the shim writes a stream to and the test reads.
type output struct {
	path string
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

// newOutput makes a FIFO in dir and reads it until the shim closes it.
func newOutput(t *testing.T, dir, name string) *output {
	t.Helper()
	o := &output{path: filepath.Join(dir, name), done: make(chan struct{})}
	f, err := fifo.OpenFifo(context.Background(), o.path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	go func() {
		defer close(o.done)
		b := make([]byte, 64<<10)
		for {
			n, err := f.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output contains s.
func (o *output) waitFor(t *testing.T, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(o.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output after %v: %q", s, d, o.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitClosed waits until the shim closed the stream.
func (o *output) waitClosed(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-o.done:
	case <-time.After(d):
		t.Fatalf("the shim did not close %s within %v", filepath.Base(o.path), d)
	}
}

// newInput makes a FIFO the test writes the process's stdin to.
func newInput(t *testing.T, dir, name string) (string, io.WriteCloser) {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := fifo.OpenFifo(context.Background(), path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return path, f
}

// exec runs args in the container as execID; it returns the exit status
// and the process's output once its stream is closed.
func (tk *task) exec(execID string, args ...string) (uint32, string) {
	t := tk.t
	t.Helper()
	dir := t.TempDir()
	out := newOutput(t, dir, "stdout")
	errOut := newOutput(t, dir, "stderr")
	tk.execStart(execID, "", out.path, errOut.path, args...)
	w, err := tk.tc.Wait(tk.ctx, &taskAPI.WaitRequest{ID: tk.id, ExecID: execID})
	if err != nil {
		t.Fatalf("wait for exec %s: %v", execID, err)
	}
	out.waitClosed(t, 10*time.Second)
	if _, err := tk.tc.Delete(tk.ctx, &taskAPI.DeleteRequest{ID: tk.id, ExecID: execID}); err != nil {
		t.Fatalf("delete exec %s: %v", execID, err)
	}
	if w.GetExitStatus() != 0 {
		t.Logf("exec %v: exit %d, stderr %q", args, w.GetExitStatus(), errOut.String())
	}
	return w.GetExitStatus(), out.String()
}

// execStart creates and starts an exec process.
func (tk *task) execStart(execID, stdin, stdout, stderr string, args ...string) {
	t := tk.t
	t.Helper()
	spec, err := typeurl.MarshalAnyToProto(&specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/usr/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.tc.Exec(tk.ctx, &taskAPI.ExecProcessRequest{
		ID: tk.id, ExecID: execID, Spec: spec, Stdin: stdin, Stdout: stdout, Stderr: stderr,
	}); err != nil {
		t.Fatalf("exec %s: %v", execID, err)
	}
	if _, err := tk.tc.Start(tk.ctx, &taskAPI.StartRequest{ID: tk.id, ExecID: execID}); err != nil {
		t.Fatalf("start exec %s: %v", execID, err)
	}
}
