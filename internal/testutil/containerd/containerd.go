// Package containerd runs a private containerd 2.x daemon for tests: its own
// root, state, sockets, CNI network config and log under
// /run/vc-test/<id>, with the runtimes
//
//	io.containerd.vc.v2    (CRI handler "vc")   containerd-shim-vc-v2 from Options.ShimDir
//	io.containerd.runc.v2  (CRI handler "runc") runc v1.4.3 from the install dir
//
// and the test images (internal/testutil/images) imported instead of
// pulled: the machine reaches no registry. The daemon and ctr come from
// hack/install-containerd.sh (VC_TEST_BIN, default /usr/local/lib/vc-test/bin).
//
//	c := containerd.StartContainerd(t, containerd.Options{})
//	c.ImportImages(t)
//	out := c.Ctr(t, "run", "--rm", "--runtime", containerd.RuncRuntime, images.BusyboxRef, "t1", "true")
//	cri := c.CRI(t) // k8s.io/cri-api clients
//	c.Restart(t)    // same root and state; shims and pods keep running
//
// Stop (registered with t.Cleanup) removes every pod and task the daemon
// still has, stops it, kills shims it left, unmounts and removes its
// directory.
package containerd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/images"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/testenv"
)

// BaseDir holds one directory per harness daemon. Short on purpose: unix
// socket paths are limited to 108 bytes, shim socket dirs to 38.
const BaseDir = "/run/vc-test"

// DefaultBinDir is where hack/install-containerd.sh installs containerd,
// ctr, containerd-shim-runc-v2 and runc.
const DefaultBinDir = "/usr/local/lib/vc-test/bin"

// ContainerdVersion is the version hack/install-containerd.sh installs.
const ContainerdVersion = "2.3.1"

// Options configure a harness daemon. The zero value is a daemon with the
// vc shim from the repository's bin/ and runc from the install dir.
type Options struct {
	// ShimDir goes first on the daemon's PATH: where containerd finds
	// containerd-shim-vc-v2. Default: the repository's bin/.
	ShimDir string
	// BinDir holds containerd, ctr, containerd-shim-runc-v2 and runc.
	// Default: $VC_TEST_BIN, else DefaultBinDir.
	BinDir string
	// Env is added to the daemon's environment (shims inherit it).
	Env []string
	// VCConfigPath, when set, is passed to the vc shim as the CRI runtime
	// option ConfigPath (runtimeoptions.Options).
	VCConfigPath string
	// ExtraConfig is TOML appended to the generated config.toml.
	ExtraConfig string
	// EnablePlugins are plugins to load that the harness disables by
	// default (e.g. io.containerd.snapshotter.v1.erofs).
	EnablePlugins []string
	// LogLevel of the daemon: default "info", or "debug" when
	// VC_TEST_CONTAINERD_DEBUG is set. (VC_TEST_CONTAINERD_LOGS=DIR keeps
	// each daemon's log there after Stop.)
	LogLevel string
}

// Containerd is a running harness daemon.
type Containerd struct {
	// ID names the harness: its directory is BaseDir/ID.
	ID string
	// Dir holds everything: root/, state/, config.toml, containerd.sock,
	// s/ (shim sockets), cni/ (network config), pods/ (CRI logs), and
	// containerd.log.
	Dir, Root, State, Address, ConfigPath, CNIConfDir, LogPath string
	// BinDir and ShimDir as resolved from Options.
	BinDir, ShimDir string
	// Env is the daemon's environment.
	Env []string

	configData []byte

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopped bool
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// BinDir is where the containerd binaries are: VC_TEST_BIN or DefaultBinDir.
func BinDir() string {
	if d := os.Getenv("VC_TEST_BIN"); d != "" {
		return d
	}
	return DefaultBinDir
}

// RequireRoot skips the test, with the reason, unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "skipped: needs root (containerd, mounts, network namespaces); run as root or with `make test`")
	}
}

// RequireBinaries fails the test unless containerd, ctr,
// containerd-shim-runc-v2 and runc are installed in dir, and the CNI
// plugins in CNIBinDir.
func RequireBinaries(t testing.TB, dir string) {
	t.Helper()
	if err := checkBinaries(dir); err != nil {
		t.Fatalf("%v: run hack/install-containerd.sh (`make test` runs it)", err)
	}
}

func checkBinaries(dir string) error {
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc"} {
		p := filepath.Join(dir, b)
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not installed", p)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "containerd"), "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", filepath.Join(dir, "containerd"), err)
	}
	if !strings.Contains(string(out), " "+ContainerdVersion) && !strings.Contains(string(out), "v"+ContainerdVersion) {
		return fmt.Errorf("%s is %s, want %s", filepath.Join(dir, "containerd"), strings.TrimSpace(string(out)), ContainerdVersion)
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(CNIBinDir, p)); err != nil {
			return fmt.Errorf("CNI plugin %s is not installed", filepath.Join(CNIBinDir, p))
		}
	}
	return nil
}

// StartContainerd starts a private daemon and registers its Stop with
// t.Cleanup. It skips the test unless root, and fails it when the
// binaries are missing.
func StartContainerd(t testing.TB, opts Options) *Containerd {
	t.Helper()
	RequireRoot(t)
	c, err := newContainerd(opts)
	if err != nil {
		t.Fatal(err)
	}
	RequireBinaries(t, c.BinDir)
	if err := c.setup(); err != nil {
		c.removeDir()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log (%s), last lines:\n%s", c.LogPath, c.LogTail(60))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop containerd: %v", err)
		}
	})
	if err := c.startDaemon(); err != nil {
		t.Fatal(err)
	}
	return c
}

func newContainerd(opts Options) (*Containerd, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("harness id: %w", err)
	}
	id := hex.EncodeToString(rnd[:])
	dir := filepath.Join(BaseDir, id)
	c := &Containerd{
		ID:         id,
		Dir:        dir,
		Root:       filepath.Join(dir, "root"),
		State:      filepath.Join(dir, "state"),
		Address:    filepath.Join(dir, "containerd.sock"),
		ConfigPath: filepath.Join(dir, "config.toml"),
		CNIConfDir: filepath.Join(dir, "cni"),
		LogPath:    filepath.Join(dir, "containerd.log"),
		BinDir:     opts.BinDir,
		ShimDir:    opts.ShimDir,
	}
	if c.BinDir == "" {
		c.BinDir = BinDir()
	}
	if c.ShimDir == "" {
		c.ShimDir = filepath.Join(RepoRoot(), "bin")
	}
	level := opts.LogLevel
	if level == "" {
		level = "info"
		if os.Getenv("VC_TEST_CONTAINERD_DEBUG") != "" {
			level = "debug"
		}
	}
	cfg, err := renderConfig(configParams{
		Root:          c.Root,
		State:         c.State,
		Address:       c.Address,
		ShimSocketDir: filepath.Join(dir, "s"),
		OptDir:        filepath.Join(dir, "opt"),
		LogLevel:      level,
		SandboxImage:  images.PauseRef,
		Runc:          filepath.Join(c.BinDir, "runc"),
		VCConfigPath:  opts.VCConfigPath,
		CNIConfDir:    c.CNIConfDir,
		Extra:         opts.ExtraConfig,
		Enabled:       opts.EnablePlugins,
	})
	if err != nil {
		return nil, err
	}
	c.configData = cfg
	path := c.ShimDir + ":" + c.BinDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PATH=") {
			c.Env = append(c.Env, e)
		}
	}
	c.Env = append(c.Env, "PATH="+path)
	c.Env = append(c.Env, opts.Env...)
	return c, nil
}

// setup sweeps directories of dead harnesses and lays this one out.
func (c *Containerd) setup() error {
	sweepStale()
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("harness dir: %w", err)
	}
	for _, d := range []string{c.Root, c.State, c.CNIConfDir, filepath.Join(c.Dir, "pods")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("harness dir: %w", err)
		}
	}
	if err := os.MkdirAll(cniIPAMDir, 0o700); err != nil {
		return fmt.Errorf("cni ipam dir: %w", err)
	}
	if err := os.WriteFile(c.ConfigPath, c.configData, 0o600); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	cni, err := cniConfList()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.CNIConfDir, "10-"+CNINetwork+".conflist"), cni, 0o644); err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	return nil
}

// startDaemon starts containerd on the harness config and waits until its
// CRI service answers.
func (c *Containerd) startDaemon() error {
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	cmd := exec.Command(filepath.Join(c.BinDir, "containerd"), "--config", c.ConfigPath)
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group: a ^C to the test reaches the test, whose
	// cleanup stops the daemon in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	logf.Close()
	exited := make(chan struct{})
	c.mu.Lock()
	c.cmd, c.exited, c.waitErr = cmd, exited, nil
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		c.waitErr = err
		c.mu.Unlock()
		close(exited)
	}()
	if err := os.WriteFile(filepath.Join(c.Dir, "containerd.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600); err != nil {
		return fmt.Errorf("containerd pid file: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("containerd exited at start (%v); log:\n%s", c.exitErr(), c.LogTail(40))
		default:
		}
		if lastErr = c.ping(); lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("containerd not ready after 30s: %w; log:\n%s", lastErr, c.LogTail(40))
}

func (c *Containerd) exitErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitErr
}

// ping asks the CRI service for its version and status.
func (c *Containerd) ping() error {
	if _, err := os.Stat(c.Address); err != nil {
		return err
	}
	cli, err := DialCRI(c.Address)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := cli.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return fmt.Errorf("cri status: %w", err)
	}
	for _, cond := range st.GetStatus().GetConditions() {
		if cond.Type == runtimeapi.RuntimeReady && !cond.Status {
			return fmt.Errorf("cri runtime not ready: %s %s", cond.Reason, cond.Message)
		}
	}
	return nil
}

// Pid is the running daemon's process id, 0 when it is not running.
func (c *Containerd) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	select {
	case <-c.exited:
		return 0
	default:
	}
	return c.cmd.Process.Pid
}

// StopDaemon stops only the daemon, with sig (SIGTERM: clean shutdown;
// SIGKILL: a crash), and waits for it. Shims, containers and VMs keep
// running, as they do when containerd restarts on a node.
func (c *Containerd) StopDaemon(sig syscall.Signal) error {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal containerd: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill containerd: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("containerd (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
	}
}

// StartDaemon starts the daemon again on the same root, state and config.
func (c *Containerd) StartDaemon() error {
	return c.startDaemon()
}

// Restart stops the daemon with SIGTERM and starts it again on the same
// root and state; running shims and pods are left alone.
func (c *Containerd) Restart(t testing.TB) {
	t.Helper()
	if err := c.StopDaemon(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c.startDaemon(); err != nil {
		t.Fatal(err)
	}
}

// LogTail returns the last n lines of the daemon's log.
func (c *Containerd) LogTail(n int) string {
	b, err := os.ReadFile(c.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop tears everything down: every CRI pod and containerd task the daemon
// still has, the daemon, the shims (and their children) it left, mounts
// under Dir, this harness's CNI address reservations, and Dir. Safe to call
// more than once.
func (c *Containerd) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()

	var errs []error
	var sandboxes []string
	if c.Pid() != 0 {
		var err error
		sandboxes, err = c.removeAll()
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.StopDaemon(syscall.SIGTERM); err != nil {
		errs = append(errs, err)
	}
	// Shims of removed tasks exit on their own, a VM's shutdown may take
	// a few seconds; what is still there after that was left behind.
	for deadline := time.Now().Add(10 * time.Second); len(shimPids(c.Address)) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if n := killShims(c.Address); n > 0 {
		errs = append(errs, fmt.Errorf("killed %d shim processes (and children) left behind", n))
	}
	if err := mount.UnmountUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	releaseIPs(sandboxes)
	if d := os.Getenv("VC_TEST_CONTAINERD_LOGS"); d != "" {
		if b, err := os.ReadFile(c.LogPath); err == nil {
			os.MkdirAll(d, 0o755)
			os.WriteFile(filepath.Join(d, "containerd-"+c.ID+".log"), b, 0o644)
		}
	}
	if err := c.removeDir(); err != nil {
		errs = append(errs, err)
	}
	if err := removeBridgeIfLast(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeBridgeIfLast deletes the shared CNI bridge once no harness is left
// under BaseDir (parallel test binaries share it), so a test run leaves no
// link on the host.
func removeBridgeIfLast() error {
	ents, _ := os.ReadDir(BaseDir)
	for _, e := range ents {
		if e.IsDir() && filepath.Join(BaseDir, e.Name()) != cniIPAMDir {
			return nil
		}
	}
	if _, err := os.Stat("/sys/class/net/" + CNIBridge); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "del", CNIBridge).CombinedOutput(); err != nil {
		return fmt.Errorf("delete CNI bridge %s: %v: %s", CNIBridge, err, out)
	}
	return nil
}

func (c *Containerd) removeDir() error {
	if err := os.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("remove %s: %w", c.Dir, err)
	}
	return nil
}

// removeAll stops and removes every CRI pod sandbox, then every task and
// container in every namespace; it returns the sandbox ids it saw.
func (c *Containerd) removeAll() ([]string, error) {
	var errs []error
	var ids []string
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if cli, err := DialCRI(c.Address); err == nil {
		if resp, err := cli.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, sb := range resp.Items {
				ids = append(ids, sb.Id)
				if _, err := cli.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
					errs = append(errs, fmt.Errorf("stop pod %s: %w", sb.Id, err))
				}
				if _, err := cli.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
					errs = append(errs, fmt.Errorf("remove pod %s: %w", sb.Id, err))
				}
			}
		} else {
			errs = append(errs, fmt.Errorf("list pods: %w", err))
		}
		cli.Close()
	}
	nss, err := c.ctr(ctx, "namespaces", "list", "-q")
	if err != nil {
		return ids, errors.Join(append(errs, err)...)
	}
	for _, ns := range strings.Fields(nss) {
		tasks, _ := c.ctr(ctx, "-n", ns, "tasks", "list", "-q")
		for _, id := range strings.Fields(tasks) {
			c.ctr(ctx, "-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", id)
			if _, err := c.ctr(ctx, "-n", ns, "tasks", "delete", "-f", id); err != nil {
				errs = append(errs, err)
			}
		}
		ctrs, _ := c.ctr(ctx, "-n", ns, "containers", "list", "-q")
		for _, id := range strings.Fields(ctrs) {
			if _, err := c.ctr(ctx, "-n", ns, "containers", "delete", id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return ids, errors.Join(errs...)
}

// ctr runs ctr against the daemon.
func (c *Containerd) ctr(ctx context.Context, args ...string) (string, error) {
	cmd := c.CtrCommand(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// CtrCommand is ctr against the daemon, with args, not yet started.
func (c *Containerd) CtrCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "ctr"), append([]string{"--address", c.Address}, args...)...)
	cmd.Env = c.Env
	return cmd
}

// Ctr runs ctr against the daemon and returns its stdout; it fails the
// test (with stderr) when ctr fails.
func (c *Containerd) Ctr(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := c.ctr(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CtrErr runs ctr against the daemon and returns stdout and the error,
// for tests that expect a failure.
func (c *Containerd) CtrErr(ctx context.Context, args ...string) (string, error) {
	return c.ctr(ctx, args...)
}

// Namespaces the test images go into: ctr's default and CRI's.
var Namespaces = []string{"default", "k8s.io"}

// ImportImages writes the busybox and pause test images and imports them
// into the default and k8s.io namespaces (unpacked for overlayfs).
func (c *Containerd) ImportImages(t testing.TB) {
	t.Helper()
	dir := filepath.Join(c.Dir, "images")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	paths, err := images.WriteAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(paths))
	for n := range paths {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, ns := range Namespaces {
		for _, n := range names {
			c.Ctr(t, "-n", ns, "images", "import", "--platform", "linux/"+runtime.GOARCH, paths[n])
		}
	}
}

// sweepStale removes the directories of harnesses whose daemon is gone
// (a test binary killed before its cleanup ran): unmounts, then removes.
// It never kills anything.
func sweepStale() {
	ents, err := os.ReadDir(BaseDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || len(e.Name()) != 8 {
			continue
		}
		dir := filepath.Join(BaseDir, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "containerd.pid"))
		if err != nil {
			// Being set up right now, or a crash before the daemon
			// started: only old ones.
			if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		} else if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && processAlive(pid, "containerd") {
			continue
		}
		if mount.UnmountUnder(dir) == nil {
			os.RemoveAll(dir)
		}
	}
}

// processAlive reports whether pid runs a program named comm.
func processAlive(pid int, comm string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(b)) == comm
}

// CtrRunTimes runs `ctr run --rm --runtime <runtime> <image> <id> args...`
// n times and returns each wall time, for comparing runtimes. A run that
// fails is an error.
func (c *Containerd) CtrRunTimes(ctx context.Context, n int, runtimeType, image string, args ...string) ([]time.Duration, error) {
	var times []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("timed-%s-%d", c.ID, i)
		cmd := c.CtrCommand(ctx, append([]string{"run", "--rm", "--runtime", runtimeType, image, id}, args...)...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			return times, fmt.Errorf("ctr run %s (%s): %w: %s", id, runtimeType, err, out)
		}
		times = append(times, d)
	}
	return times, nil
}

// Median of durations (0 for none).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
