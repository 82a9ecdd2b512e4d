package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// Docker is Debian 12's docker.io (20.10): its CLI and daemon by their
// full paths (another docker CLI may come first on PATH), the daemon's
// managed containerd and containerd-shim-runc-v2 Debian's too, found on
// the PATH the test gives the daemon.
const (
	dockerCLI    = "/usr/bin/docker"
	dockerDaemon = "/usr/sbin/dockerd"
	dockerPATH   = "/usr/sbin:/usr/bin:/sbin:/bin"
	// dockerRuntime is vc-runtime's name in the daemon's config.
	dockerRuntime = "vc"
	// dockerFactoryRuntime is vc-runtime with --factory (the daemon's
	// factoryDir).
	dockerFactoryRuntime = "vc-factory"
)

// factoryDir is the factory of the daemon's runtime
// dockerFactoryRuntime: fixed when the daemon starts, the template made
// there by the test that uses it (without one vc-runtime boots).
func (d *dockerdT) factoryDir() string { return filepath.Join(d.dir, "factory") }

// dockerd is the test's own docker daemon: everything of it (data root,
// exec root, socket, pid file, config, log) in dir; in a network
// namespace of its own, so that its bridge, iptables rules and published
// ports stay out of the machine's (other tests and their networks
// share it). It starts with the first docker test and stops in sweep.
type dockerdT struct {
	dir  string
	cmd  *exec.Cmd
	host string // DOCKER_HOST
	done chan struct{}
	// made are the directories of fixed paths the daemon makes that were
	// not there before it, deepest first: removed after it, if empty.
	made []string
}

// dockerFixedDirs are the directories the daemon and its containerd make
// whatever their roots: dockerd 20.10's plugin exec root, containerd
// 1.6's shim socket directory. Deepest first.
var dockerFixedDirs = []string{"/run/docker/plugins", "/run/docker", "/run/containerd/s", "/run/containerd"}

var (
	dockerOnce sync.Once
	dockerErr  error
	dockerD    *dockerdT
)

// docker runs /usr/bin/docker against the test's daemon, starting it
// first if need be, and returns stdout, stderr and the exit code. It
// skips the test where docker.io is not installed.
func docker(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	for _, p := range []string{dockerCLI, dockerDaemon, "/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2"} {
		if _, err := os.Stat(p); err != nil {
			testenv.Skipf(t, "docker.io not installed (hack/install-deps.sh installs it): %v", err)
		}
	}
	dockerOnce.Do(func() { dockerD, dockerErr = startDockerd() })
	if dockerErr != nil {
		t.Fatalf("dockerd: %v", dockerErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return dockerD.run(ctx, nil, args...)
}

func (d *dockerdT) run(ctx context.Context, stdin []byte, args ...string) (string, string, int) {
	cmd := exec.CommandContext(ctx, dockerCLI, args...)
	// Only the daemon's address: no config of the machine's user.
	cmd.Env = []string{"PATH=" + dockerPATH, "DOCKER_HOST=" + d.host, "DOCKER_CONFIG=" + filepath.Join(d.dir, "cli")}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Run()
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// startDockerd starts the daemon with vc-runtime registered as "vc" and
// loads the busybox image.
func startDockerd() (_ *dockerdT, err error) {
	dir, err := os.MkdirTemp("", "vc-dockerd-")
	if err != nil {
		return nil, err
	}
	d := &dockerdT{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock"), done: make(chan struct{})}
	for _, p := range dockerFixedDirs {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			d.made = append(d.made, p)
		}
	}
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	cfg, err := json.Marshal(map[string]any{
		// The daemon's id key: not /etc/docker/key.json.
		"deprecated-key-path": filepath.Join(dir, "key.json"),
		"runtimes": map[string]any{dockerRuntime: map[string]any{
			"path":        runtimeBin,
			"runtimeArgs": []string{"--data-root", dataRoot, "--accel", "tcg"},
		}, dockerFactoryRuntime: map[string]any{
			"path":        runtimeBin,
			"runtimeArgs": []string{"--data-root", dataRoot, "--accel", "tcg", "--factory", d.factoryDir()},
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), cfg, 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// unshare gives it a network namespace whose loopback is up, then is
	// the daemon (exec).
	d.cmd = exec.Command("unshare", "--net", "--", "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		dockerDaemon,
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", d.host,
	)
	d.cmd.Env = []string{"PATH=" + dockerPATH, "VC_AGENT=" + agentBin}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, code := d.run(ctx, nil, "version")
		cancel()
		if code == 0 {
			break
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("dockerd exited: %s; log: %s", d.cmd.ProcessState, d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("dockerd did not answer in a minute; log: %s", d.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	img, err := images.Busybox()
	if err != nil {
		return nil, err
	}
	tar := filepath.Join(dir, "busybox.tar")
	if err := img.WriteDockerFile(tar); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, errOut, code := d.run(ctx, nil, "load", "-i", tar); code != 0 {
		return nil, fmt.Errorf("docker load: exit %d: %s%s", code, out, errOut)
	}
	return d, nil
}

func (d *dockerdT) logTail() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// stop stops the daemon (SIGTERM: it stops its containers and its
// containerd), kills what of it is left, and removes its directory.
func (d *dockerdT) stop() error {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(time.Minute):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	// Whatever names the daemon's directory (its containerd, shims,
	// vc-runtime's owners and their VMs) goes.
	var left []int
	deadline := time.Now().Add(20 * time.Second)
	for {
		left = proc.Find(func(args []string) bool { return strings.Contains(strings.Join(args, " "), d.dir+"/") })
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	err := mount.RemoveAll(d.dir)
	for _, p := range d.made {
		os.Remove(p) // only if empty: another containerd 1.6 may use it
	}
	if len(left) > 0 {
		return fmt.Errorf("processes of dockerd left (killed): %v", left)
	}
	return err
}

// stopDockerd stops the test's daemon, if it started.
func stopDockerd() {
	if dockerD == nil {
		return
	}
	if err := dockerD.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "sweep: dockerd: %v\n", err)
	}
}

// hostKernel is the host's kernel release.
func hostKernel() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}
