// Package vm_test boots real VMs under QEMU (TCG) with images from
// pkg/guestimage and talks to the agent inside over virtio-serial.
//
// QEMU is started here with a minimal command line on purpose: these
// tests check the image and the agent, not pkg/hypervisor.
package vm_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

const qemuBin = "qemu-system-x86_64"

// requireVMTools skips, saying why, when this machine cannot build images
// or run QEMU.
func requireVMTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{qemuBin, "apt-cache", "apt-get", "dpkg-deb", "depmod"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skipf(t, "needs %s to build and boot a guest image: %v", tool, err)
		}
	}
}

// cacheDir is where the kernel .deb is kept between test runs: the
// default /var/cache/vc when writable, VC_CACHE_DIR when set.
func cacheDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("VC_CACHE_DIR"); d != "" {
		return d
	}
	d := guestimage.DefaultCacheDir
	if err := os.MkdirAll(d, 0o755); err == nil && unix.Access(d, unix.W_OK) == nil {
		return d
	}
	u, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no writable cache for the kernel package (%s is not writable, set VC_CACHE_DIR): %v", d, err)
	}
	return filepath.Join(u, "vc")
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// imageOptions are options building into a per-test root with the shared
// kernel cache.
func imageOptions(t testing.TB) guestimage.Options {
	return guestimage.Options{
		Root:     t.TempDir(),
		CacheDir: cacheDir(t),
		Logger:   testLogger(t),
	}
}

var (
	floorOnce sync.Once
	floorBin  string
	floorErr  error
)

// floorInit builds cmd/vc-floor-init, static, once per test binary.
func floorInit(t testing.TB) string {
	t.Helper()
	floorOnce.Do(func() {
		floorBin, floorErr = testutil.Build("vc-floor-init", "./cmd/vc-floor-init", []string{"CGO_ENABLED=0"}, "-ldflags", "-s -w")
	})
	if floorErr != nil {
		t.Fatalf("build vc-floor-init: %v", floorErr)
	}
	return floorBin
}

// vm is a running QEMU.
type vm struct {
	cmd     *exec.Cmd
	dir     string
	sock    string
	console string
	started time.Time
	exited  chan struct{}
	stderr  bytes.Buffer
}

// Console returns what the guest wrote to its serial console so far.
func (v *vm) Console() string {
	b, _ := os.ReadFile(v.console)
	return string(b)
}

// startVM boots img under TCG with the agent's virtio-serial port bridged
// to a unix socket, plus extra QEMU arguments. QEMU is killed at the end
// of the test (and if the test binary dies: Pdeathsig).
func startVM(t testing.TB, img *guestimage.Image, extra ...string) *vm {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: keep them short.
	dir, err := os.MkdirTemp("", "vcvm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	v := &vm{
		dir:     dir,
		sock:    filepath.Join(dir, "agent.sock"),
		console: filepath.Join(dir, "console.log"),
		exited:  make(chan struct{}),
	}
	args := append([]string{
		"-M", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "512", "-smp", "2",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "file:" + v.console,
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", "console=ttyS0 panic=-1 quiet",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=ch0,path=" + v.sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=ch0,name=agent.channel.0",
		"-no-reboot",
	}, extra...)
	v.cmd = exec.Command(qemuBin, args...)
	v.cmd.Stdout = &v.stderr
	v.cmd.Stderr = &v.stderr
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", qemuBin, err)
	}
	go func() {
		v.cmd.Wait()
		close(v.exited)
	}()
	t.Cleanup(func() {
		v.cmd.Process.Kill()
		<-v.exited
		if t.Failed() {
			t.Logf("qemu: %s\nqemu output:\n%s\nguest console:\n%s", v.cmd.ProcessState, v.stderr.String(), v.Console())
		}
	})
	return v
}

// agentClient is a ttRPC connection to the agent.
type agentClient struct {
	conn   net.Conn
	client *ttrpc.Client
	health pb.HealthService
	svc    pb.AgentServiceService
}

func (c *agentClient) Close() { c.client.Close() }

// connect connects to the agent's socket once and asks Health.Check,
// waiting for the answer until ctx ends. A request the agent loses is
// not retried.
func (v *vm) connect(ctx context.Context) (*agentClient, error) {
	conn, err := net.Dial("unix", v.sock)
	if err != nil {
		return nil, err
	}
	c := &agentClient{conn: conn, client: ttrpc.NewClient(conn)}
	c.health = pb.NewHealthClient(c.client)
	c.svc = pb.NewAgentServiceClient(c.client)
	resp, err := c.health.Check(ctx, &pb.CheckRequest{})
	if err == nil && resp.Status != pb.HealthCheckResponse_SERVING {
		err = fmt.Errorf("health status %v", resp.Status)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dial connects to the agent's socket and waits until Health.Check
// answers SERVING, retrying until ctx ends.
func (v *vm) dial(ctx context.Context) (*agentClient, error) {
	var lastErr error
	for {
		select {
		case <-v.exited:
			return nil, fmt.Errorf("qemu exited (%v) before the agent answered; last error: %v", v.cmd.ProcessState, lastErr)
		default:
		}
		conn, err := net.Dial("unix", v.sock)
		if err == nil {
			c := &agentClient{conn: conn, client: ttrpc.NewClient(conn)}
			c.health = pb.NewHealthClient(c.client)
			c.svc = pb.NewAgentServiceClient(c.client)
			// The request waits in QEMU's socket until the guest opens
			// its port: one attempt may take the whole boot.
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			resp, err := c.health.Check(cctx, &pb.CheckRequest{})
			cancel()
			if err == nil && resp.Status == pb.HealthCheckResponse_SERVING {
				return c, nil
			}
			if err == nil {
				err = fmt.Errorf("health status %v", resp.Status)
			}
			c.Close()
			lastErr = err
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent did not answer Health.Check: %w (last error: %v)", ctx.Err(), lastErr)
		case <-v.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}
