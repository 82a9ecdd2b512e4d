package agent_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// env is an agent and the containers a test created in it, removed at
// the end of the test (before the agent is stopped), so no cgroup stays
// behind on the host.
type env struct {
	t   *testing.T
	a   *testutil.Agent
	ids []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, a: testutil.StartAgent(t)}
	t.Cleanup(e.cleanup)
	return e
}

func (e *env) cleanup() {
	exited := false
	select {
	case <-e.a.Exited(): // DestroySandbox shut it down
		exited = true
	default:
	}
	for _, id := range e.ids {
		if !exited {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, err := e.a.Svc.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id, Timeout: 10})
			cancel()
			if err != nil && status.Code(err) != codes.NotFound {
				e.t.Errorf("cleanup: remove %s: %v", id, err)
			}
		}
		for _, ctrl := range []string{"memory", "pids", "freezer", "cpu", "devices"} {
			dir := filepath.Join("/sys/fs/cgroup", ctrl, "vc", id)
			if _, err := os.Stat(dir); err == nil {
				e.t.Errorf("cgroup %s left behind", dir)
				os.Remove(dir)
			}
		}
	}
}

// ctx returns a context that ends with the test or after d.
func (e *env) ctx(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	e.t.Cleanup(cancel)
	return ctx
}

// newID returns a container id unique on the host: containers' cgroups
// (/vc/<id>) are shared by every agent running on it.
func newID(name string) string {
	return fmt.Sprintf("%s-%08x", name, rand.Uint32())
}

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// spec returns the spec of a busybox container running args, in the
// form runc's default spec has.
func spec(rootfs string, args ...string) *pb.Spec {
	return &pb.Spec{
		Version: "1.0.2",
		Process: &pb.Process{
			Args: args,
			Env:  []string{pathEnv, "HOME=/root"},
			Cwd:  "/",
			User: &pb.User{},
			Capabilities: &pb.LinuxCapabilities{
				Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps,
			},
			Rlimits:         []*pb.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &pb.Root{Path: rootfs},
		Hostname: "ctr",
		Mounts: []*pb.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &pb.Linux{
			Namespaces: []*pb.LinuxNamespace{
				{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "network"},
			},
			Resources: &pb.LinuxResources{
				Devices: []*pb.LinuxDeviceCgroup{{Allow: false, Access: "rwm", Major: -1, Minor: -1}},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// create creates a container (removed at the end of the test).
func (e *env) create(id string, s *pb.Spec) {
	e.t.Helper()
	if err := e.tryCreate(&pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: s}); err != nil {
		e.t.Fatalf("create %s: %v", id, err)
	}
}

func (e *env) tryCreate(req *pb.CreateContainerRequest) error {
	_, err := e.a.Svc.CreateContainer(e.ctx(30*time.Second), req)
	if err == nil {
		e.ids = append(e.ids, req.ContainerId)
	}
	return err
}

func (e *env) start(id string) {
	e.t.Helper()
	if _, err := e.a.Svc.StartContainer(e.ctx(30*time.Second), &pb.StartContainerRequest{ContainerId: id}); err != nil {
		e.t.Fatalf("start %s: %v", id, err)
	}
}

// run creates and starts a container.
func (e *env) run(id string, s *pb.Spec) {
	e.t.Helper()
	e.create(id, s)
	e.start(id)
}

func (e *env) exec(id, execID string, terminal bool, args ...string) {
	e.t.Helper()
	_, err := e.a.Svc.ExecProcess(e.ctx(30*time.Second), &pb.ExecProcessRequest{
		ContainerId: id, ExecId: execID,
		Process: &pb.Process{Args: args, Env: []string{pathEnv, "TERM=dumb"}, Cwd: "/", Terminal: terminal, User: &pb.User{}},
	})
	if err != nil {
		e.t.Fatalf("exec %s in %s: %v", execID, id, err)
	}
}

func (e *env) wait(id, execID string) int32 {
	e.t.Helper()
	r, err := e.a.Svc.WaitProcess(e.ctx(60*time.Second), &pb.WaitProcessRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		e.t.Fatalf("wait %s/%s: %v", id, execID, err)
	}
	return r.Status
}

// readAll reads a stream until the agent reports its end (OutOfRange).
func (e *env) readAll(id, execID string, stderr bool) string {
	e.t.Helper()
	var b strings.Builder
	ctx := e.ctx(60 * time.Second)
	for {
		chunk, err := e.read(ctx, id, execID, stderr, 32<<10)
		if status.Code(err) == codes.OutOfRange {
			return b.String()
		}
		if err != nil {
			e.t.Fatalf("read %s/%s after %d bytes: %v", id, execID, b.Len(), err)
		}
		b.Write(chunk)
	}
}

// readUntil reads stdout until it contains want, and returns all read.
func (e *env) readUntil(id, execID, want string) string {
	e.t.Helper()
	var b strings.Builder
	ctx := e.ctx(30 * time.Second)
	for !strings.Contains(b.String(), want) {
		chunk, err := e.read(ctx, id, execID, false, 4096)
		if err != nil {
			e.t.Fatalf("read %s/%s waiting for %q (got %q): %v", id, execID, want, b.String(), err)
		}
		b.Write(chunk)
	}
	return b.String()
}

func (e *env) read(ctx context.Context, id, execID string, stderr bool, n uint32) ([]byte, error) {
	req := &pb.ReadStreamRequest{ContainerId: id, ExecId: execID, Len: n}
	var r *pb.ReadStreamResponse
	var err error
	if stderr {
		r, err = e.a.Svc.ReadStderr(ctx, req)
	} else {
		r, err = e.a.Svc.ReadStdout(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return r.Data, nil
}

func (e *env) signal(id, execID string, sig uint32) {
	e.t.Helper()
	if _, err := e.a.Svc.SignalProcess(e.ctx(10*time.Second), &pb.SignalProcessRequest{ContainerId: id, ExecId: execID, Signal: sig}); err != nil {
		e.t.Fatalf("signal %d to %s/%s: %v", sig, id, execID, err)
	}
}

// wantCode checks that err is a ttRPC status with code and a message
// naming field.
func wantCode(t *testing.T, what string, err error, code codes.Code, field string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, code)
		return
	}
	if got := status.Code(err); got != code {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, code)
		return
	}
	if field != "" && !strings.Contains(err.Error(), field) {
		t.Errorf("%s: error %q does not name %q", what, err, field)
	}
}

// isTimeout tells whether err is a context deadline passing (locally or
// reported by the agent).
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
}
