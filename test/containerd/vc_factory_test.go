// The vc shim with a VM factory (config key factory): sandboxes that fit
// the template start from it, or take a VM of its cache.
package containerd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
)

// newShimFactory makes a template of the VM the shim of startVC boots
// (its kernel and initrd, tcg, the default size), with the NAT NIC for
// `ctr run` containers or without (noNAT) for CRI pods in a CNI network
// namespace. Call it before startVC: its cleanup, which destroys the
// factory and checks that none of its VMs is left, then runs after
// containerd's.
func newShimFactory(t *testing.T, s vcSetup, noNAT bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "factory")
	begin := time.Now()
	if _, err := vcfactory.Init(ctx, dir, vcfactory.Config{
		Hypervisor: vc.HypervisorConfig{Kernel: s.kernel, Initrd: s.initrd, Accel: "tcg"},
		NoNAT:      noNAT,
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("factory init took %s", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := vcfactory.Destroy(dir); err != nil {
			t.Errorf("destroy the factory: %v", err)
		}
		if pids := qemuPids(dir); len(pids) > 0 {
			t.Errorf("qemu processes of the factory left: %v", pids)
			killQEMU(dir)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("factory %s left: %v", dir, err)
		}
	})
	return dir
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers and a reader.
type lockedBuffer = testutil.SyncBuffer

// factoryCache is a cache of a factory served by the test process.
type factoryCache struct {
	dir    string
	log    *lockedBuffer
	cancel context.CancelFunc
	served chan error
}

// serveCache serves the factory in dir with a cache of size 1 in a
// goroutine (its log into a buffer) and waits until its VM is ready. Its
// cleanup stops it if the test did not.
func serveCache(t *testing.T, dir string) *factoryCache {
	t.Helper()
	c := &factoryCache{dir: dir, log: &lockedBuffer{}, served: make(chan error, 1)}
	// The cache keeps the logger that is the default when it starts.
	// (Setting slog's default redirects package log's output, which
	// setting it back to the original does not undo.)
	prev, prevOut, prevFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(c.log, nil)))
	defer func() {
		slog.SetDefault(prev)
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	}()
	var ctx context.Context
	ctx, c.cancel = context.WithCancel(context.Background())
	go func() { c.served <- vcfactory.ServeCache(ctx, dir, 1) }()
	t.Cleanup(func() {
		c.stop(t)
		if t.Failed() {
			t.Logf("cache log:\n%s", c.log.String())
		}
	})
	c.waitReady(t)
	return c
}

// waitReady waits until the cache has a VM ready.
func (c *factoryCache) waitReady(t *testing.T) vcfactory.CacheStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := vcfactory.QueryCache(ctx, c.dir)
		cancel()
		if err == nil && st.Ready >= 1 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache of %s: no vm ready after a minute: %+v, %v\n%s", c.dir, st, err, c.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// status is the cache's status.
func (c *factoryCache) status(t *testing.T) vcfactory.CacheStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := vcfactory.QueryCache(ctx, c.dir)
	if err != nil {
		t.Fatalf("cache status: %v", err)
	}
	return st
}

// readyPids are the QEMU pids of the cache's VMs nobody took; call it
// once they are ready (waitReady), not while one starts.
func (c *factoryCache) readyPids(t *testing.T) []int {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(c.dir, "cache"))
	var pids []int
	for _, e := range ents {
		d := filepath.Join(c.dir, "cache", e.Name())
		if _, err := os.Stat(filepath.Join(d, "taken")); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "vm", "qemu.pid"))
		if err != nil {
			t.Fatalf("cache vm %s: %v", d, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		pids = append(pids, pid)
	}
	return pids
}

// stop stops the cache (once) and reports its error.
func (c *factoryCache) stop(t *testing.T) {
	t.Helper()
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.served:
		if err != nil {
			t.Errorf("cache: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the cache did not stop in 30s")
	}
}

// sandboxState reads the sandbox state the shim's pkg/vc wrote for
// sandbox id: <state_root>/<id>/sandbox.json.
func (d *vcDaemon) sandboxState(t *testing.T, id string) vc.SandboxStatus {
	t.Helper()
	path := filepath.Join(d.stateRoot, id, "sandbox.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("sandbox state: %v", err)
	}
	var st vc.SandboxStatus
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("sandbox state %s: %v", path, err)
	}
	t.Logf("sandbox %s: vm pid %d, vm dir %q, boot %+v", id, st.VMPid, st.VMDir, st.Boot)
	return st
}

// qemuRunning tells whether pid is a running QEMU (not a zombie).
func qemuRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte("qemu-system"))
}

// ctrRunLogged starts busybox detached with the vc runtime, its output
// in a file, and waits until the output has want.
func (d *vcDaemon) ctrRunLogged(t *testing.T, id, want string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), id+".log")
	d.Ctr(t, append([]string{"run", "-d", "--log-uri", "file://" + logPath, "--runtime", containerd.VCRuntime, images.BusyboxRef, id}, args...)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if string(b) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: output %q, want %q", id, b, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ctrRemove kills the task of id, waits for it to stop and removes it and
// the container.
func (d *vcDaemon) ctrRemove(t *testing.T, id string) {
	t.Helper()
	d.Ctr(t, "task", "kill", "-s", "SIGKILL", id)
	waitFor(t, 30*time.Second, id+" to stop", func() bool {
		return regexpMatch(id+`\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls"))
	})
	d.Ctr(t, "task", "delete", id)
	d.Ctr(t, "container", "delete", id)
}

// sandboxGone checks that nothing of a removed sandbox is left: its
// state, its QEMU, the cache VM's directory it took, a process (QEMU,
// passt) naming its VM's directory.
func (d *vcDaemon) sandboxGone(t *testing.T, id string, st vc.SandboxStatus) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(d.stateRoot, id)); !os.IsNotExist(err) {
		t.Errorf("state of removed sandbox %s: %v", id, err)
	}
	if qemuRunning(st.VMPid) {
		t.Errorf("qemu %d of removed sandbox %s runs", st.VMPid, id)
	}
	vmDir := filepath.Join(d.stateRoot, id)
	if st.VMDir != "" {
		vmDir = st.VMDir
		if _, err := os.Stat(st.VMDir); !os.IsNotExist(err) {
			t.Errorf("vm dir %s of removed sandbox %s: %v", st.VMDir, id, err)
		}
	}
	// passt goes once QEMU's end of its socket closes.
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pids = proc.Find(func(args []string) bool { return strings.Contains(strings.Join(args, " "), vmDir+"/") })
		if len(pids) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, pid := range pids {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Errorf("process %d of removed sandbox %s runs: %s", pid, id, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
}

// TestVCFactoryCtr: the shim configured with a factory starts `ctr run`
// containers (the NAT network) from its template; with a cache serving
// the factory, the next takes the cache's ready VM, and removing it
// through containerd leaves nothing of it; a shim killed with SIGKILL
// (containerd down, so only the cache can notice) loses its cache VM,
// and containerd cleans up the rest once back.
func TestVCFactoryCtr(t *testing.T) {
	containerd.RequireRoot(t)
	begin := time.Now()
	dir := newShimFactory(t, setupVC(t), false)
	d := startVC(t, fmt.Sprintf("factory = %q", dir))
	const script = "echo $((6*7)); uname -r; exec sleep 1000"
	want := "42\n" + d.setup.kernelVersion + "\n"

	// From the template: no cache runs.
	d.ctrRunLogged(t, "vc-fac-tmpl", want, "sh", "-c", script)
	st := d.sandboxState(t, "vc-fac-tmpl")
	if !st.Boot.FromTemplate || st.Boot.FromCache || st.VMDir != "" {
		t.Errorf("sandbox without a cache: boot %+v, vm dir %q; want from the template, not the cache", st.Boot, st.VMDir)
	}
	if st.Config.Hypervisor.Factory != dir {
		t.Errorf("sandbox's hypervisor factory %q, want %q", st.Config.Hypervisor.Factory, dir)
	}
	if out := d.Ctr(t, "task", "exec", "--exec-id", "e1", "vc-fac-tmpl", "sh", "-c", "echo exec-$((1+1))"); out != "exec-2\n" {
		t.Errorf("exec: %q", out)
	}
	d.ctrRemove(t, "vc-fac-tmpl")
	d.waitNoShims(t)
	d.sandboxGone(t, "vc-fac-tmpl", st)

	// From the cache: the sandbox takes its ready VM.
	c := serveCache(t, dir)
	ready := c.readyPids(t)
	if len(ready) != 1 {
		t.Fatalf("ready vms of the cache: %v, want one", ready)
	}
	d.ctrRunLogged(t, "vc-fac-cache", want, "sh", "-c", script)
	st = d.sandboxState(t, "vc-fac-cache")
	if !st.Boot.FromCache || !st.Boot.FromTemplate {
		t.Fatalf("sandbox with a cache ready: boot %+v, want from the cache", st.Boot)
	}
	if filepath.Dir(st.VMDir) != filepath.Join(dir, "cache") || st.VMPid != ready[0] {
		t.Errorf("sandbox's vm: dir %q pid %d, want the cache's ready one (in %s/cache, pid %d)", st.VMDir, st.VMPid, dir, ready[0])
	}
	shims := d.shimPids()
	if len(shims) != 1 {
		t.Fatalf("shims %v, want one", shims)
	}
	if taken, err := os.ReadFile(filepath.Join(st.VMDir, "taken")); err != nil || !strings.Contains(string(taken), fmt.Sprintf(`"owner_pid":%d`, shims[0])) {
		t.Errorf("taken vm's owner: %q, %v; want the shim %d", taken, err, shims[0])
	}
	if out := d.Ctr(t, "task", "exec", "--exec-id", "e1", "vc-fac-cache", "sh", "-c", "echo exec-$((1+1))"); out != "exec-2\n" {
		t.Errorf("exec: %q", out)
	}
	d.ctrRemove(t, "vc-fac-cache")
	d.waitNoShims(t)
	d.sandboxGone(t, "vc-fac-cache", st)
	if cs := c.status(t); cs.Taken != 1 || cs.Running != 0 {
		t.Errorf("cache after the sandbox's removal: %+v, want 1 taken, 0 running", cs)
	}

	// The shim killed while containerd is down: the cache kills the VM
	// its owner took, as a VM the shim started would die with it.
	c.waitReady(t)
	d.ctrRunLogged(t, "vc-fac-kill", want, "sh", "-c", script)
	st = d.sandboxState(t, "vc-fac-kill")
	if !st.Boot.FromCache {
		t.Fatalf("sandbox with a cache ready: boot %+v, want from the cache", st.Boot)
	}
	shims = d.shimPids()
	if len(shims) != 1 || !qemuRunning(st.VMPid) {
		t.Fatalf("shims %v, qemu %d running %v: want one shim and its vm", shims, st.VMPid, qemuRunning(st.VMPid))
	}
	if err := d.StopDaemon(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Back for the harness's cleanup if the test stops before it is.
	defer func() {
		if d.Pid() == 0 {
			d.StartDaemon()
		}
	}()
	syscall.Kill(shims[0], syscall.SIGKILL)
	killed := time.Now()
	waitFor(t, 10*time.Second, "the cache to kill the vm of the killed shim", func() bool { return !qemuRunning(st.VMPid) })
	t.Logf("vm %d gone %s after its shim was killed", st.VMPid, time.Since(killed).Round(time.Millisecond))
	if !strings.Contains(c.log.String(), "owner of a taken vm exited") {
		t.Errorf("cache log lacks the owner's exit:\n%s", c.log.String())
	}
	if err := d.StartDaemon(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "containerd to clean up after the dead shim", func() bool {
		_, err := os.Stat(filepath.Join(d.stateRoot, "vc-fac-kill"))
		return os.IsNotExist(err) && !strings.Contains(d.Ctr(t, "task", "ls"), "RUNNING")
	})
	d.CtrErr(context.Background(), "task", "delete", "vc-fac-kill")
	d.Ctr(t, "container", "delete", "vc-fac-kill")
	d.sandboxGone(t, "vc-fac-kill", st)
	if m := mountsUnder(d.State); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}

	// Stopping the cache stops its ready VM.
	c.waitReady(t)
	ready = c.readyPids(t)
	c.stop(t)
	for _, pid := range ready {
		if qemuRunning(pid) {
			t.Errorf("ready vm %d of a stopped cache runs", pid)
		}
	}
	t.Logf("took %s", time.Since(begin).Round(time.Millisecond))
}

// TestVCFactoryCRIPod: CRI pods, in CNI network namespaces, start from a
// template made without the NAT NIC, their NIC hotplugged: one from the
// template, then one taken from the cache; both have their hostname and
// their pod address on eth0, reach the bridge, run a second container
// with a volume, and removing them leaves nothing. A `ctr run` container
// (NAT) does not fit that template: it boots, and takes nothing from the
// cache.
func TestVCFactoryCRIPod(t *testing.T) {
	containerd.RequireRoot(t)
	begin := time.Now()
	dir := newShimFactory(t, setupVC(t), true)
	d := startVC(t, fmt.Sprintf("factory = %q", dir))
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var c *factoryCache
	for _, name := range []string{"vc-fac-pod", "vc-fac-cpod"} {
		cached := name == "vc-fac-cpod"
		var ready []int
		if cached {
			c = serveCache(t, dir)
			ready = c.readyPids(t)
			// A `ctr run` container is on the NAT network: it does not
			// fit the template, boots, and leaves the cache's VM alone.
			out, stderr, code := d.ctrRun(t, "vc-fac-nat", "sh", "-c", "echo $((6*7))")
			if code != 0 || out != "42\n" {
				t.Errorf("ctr run beside a template without NAT: exit %d, out %q, stderr %s", code, out, stderr)
			}
			if b, _ := os.ReadFile(d.LogPath); !bytes.Contains(b, []byte("sandbox does not fit the factory's template: booting")) {
				t.Errorf("the shim did not log why the container booted")
			}
			if cs := c.status(t); cs.Taken != 0 || cs.Ready != 1 {
				t.Errorf("cache after a container that does not fit: %+v, want none taken, one ready", cs)
			}
		}
		pcfg, podID, ctrID := runPod(t, d.Containerd, cri, containerd.VCHandler, name, "sh", "-c", "echo started; exec sleep 1000")
		st := d.sandboxState(t, podID)
		if !st.Boot.FromTemplate || st.Boot.FromCache != cached {
			t.Errorf("pod %s: boot %+v, want from the template, from the cache %v", name, st.Boot, cached)
		}
		if cached && (filepath.Dir(st.VMDir) != filepath.Join(dir, "cache") || len(ready) != 1 || st.VMPid != ready[0]) {
			t.Errorf("pod %s: vm dir %q pid %d, want the cache's ready one (in %s/cache, pids %v)", name, st.VMDir, st.VMPid, dir, ready)
		}
		ps, err := cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
		if err != nil {
			t.Fatal(err)
		}
		ip := ps.GetStatus().GetNetwork().GetIp()
		if r := execSync(t, cri, ctrID, "ip", "-4", "addr", "show", "eth0"); ip == "" || !strings.Contains(string(r.Stdout), ip+"/24") {
			t.Errorf("pod %s: eth0 in the guest lacks the pod's address %q:\n%s%s", name, ip, r.Stdout, r.Stderr)
		}
		if r := execSync(t, cri, ctrID, "ping", "-c", "1", "-W", "5", containerd.CNIGateway); r.ExitCode != 0 {
			t.Errorf("pod %s: ping the bridge gateway: exit %d\n%s%s", name, r.ExitCode, r.Stdout, r.Stderr)
		}
		if r := execSync(t, cri, ctrID, "hostname"); strings.TrimSpace(string(r.Stdout)) != pcfg.Hostname {
			t.Errorf("pod %s: hostname %q, want %q", name, r.Stdout, pcfg.Hostname)
		}
		if r := execSync(t, cri, ctrID, "uname", "-r"); strings.TrimSpace(string(r.Stdout)) != d.setup.kernelVersion {
			t.Errorf("pod %s: uname -r %q, want the guest's %q", name, r.Stdout, d.setup.kernelVersion)
		}
		// A second container, with a volume (a host directory bound in):
		// its files reach the guest through the VM's shared directory.
		vol := t.TempDir()
		if err := os.WriteFile(filepath.Join(vol, "key"), []byte("value-"+name), 0o644); err != nil {
			t.Fatal(err)
		}
		c2cfg := containerd.ContainerConfig("second", images.BusyboxRef, "sleep", "1000")
		c2cfg.Mounts = []*runtimeapi.Mount{{HostPath: vol, ContainerPath: "/etc/config", Readonly: true}}
		c2, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c2cfg, SandboxConfig: pcfg})
		if err != nil {
			t.Fatalf("CreateContainer (second): %v", err)
		}
		if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c2.ContainerId}); err != nil {
			t.Fatalf("StartContainer (second): %v", err)
		}
		if r := execSync(t, cri, c2.ContainerId, "cat", "/etc/config/key"); string(r.Stdout) != "value-"+name {
			t.Errorf("pod %s: volume file: %q (stderr %q)", name, r.Stdout, r.Stderr)
		}
		logPath := filepath.Join(d.Dir, "pods", name+"-uid", "busybox.log")
		if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), " stdout F started") {
			t.Errorf("pod %s: container log %s: %q, %v", name, logPath, b, err)
		}
		if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("StopPodSandbox: %v", err)
		}
		if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
			t.Fatalf("RemovePodSandbox: %v", err)
		}
		d.waitNoShims(t)
		d.sandboxGone(t, podID, st)
		if left := leftovers(d.stateRoot); left != "" {
			t.Errorf("after RemovePodSandbox: %s", left)
		}
	}
	if cs := c.status(t); cs.Taken != 1 || cs.Running != 0 {
		t.Errorf("cache after the pod's removal: %+v, want 1 taken, 0 running", cs)
	}
	c.stop(t)
	t.Logf("took %s", time.Since(begin).Round(time.Millisecond))
}

// TestVCFactoryCacheCrash: sandboxes on VMs of the cache fail as others
// do, with containerd running: a VM killed under its task stops the task,
// and deleting it leaves nothing; a shim killed with SIGKILL loses its VM
// and containerd's cleanup (shim delete) removes the rest; a container
// whose creation fails after its sandbox took a VM leaves neither the VM
// nor its directory.
func TestVCFactoryCacheCrash(t *testing.T) {
	containerd.RequireRoot(t)
	begin := time.Now()
	dir := newShimFactory(t, setupVC(t), false)
	d := startVC(t, fmt.Sprintf("factory = %q", dir))
	c := serveCache(t, dir)

	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-fac-vmcrash", "sleep", "1000")
	st := d.sandboxState(t, "vc-fac-vmcrash")
	if !st.Boot.FromCache {
		t.Fatalf("boot %+v, want from the cache", st.Boot)
	}
	syscall.Kill(st.VMPid, syscall.SIGKILL)
	waitFor(t, 30*time.Second, "the task to stop", func() bool {
		return regexpMatch(`vc-fac-vmcrash\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls"))
	})
	d.Ctr(t, "task", "delete", "vc-fac-vmcrash")
	d.Ctr(t, "container", "delete", "vc-fac-vmcrash")
	d.waitNoShims(t)
	d.sandboxGone(t, "vc-fac-vmcrash", st)

	c.waitReady(t)
	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "vc-fac-shimcrash", "sleep", "1000")
	st = d.sandboxState(t, "vc-fac-shimcrash")
	if !st.Boot.FromCache {
		t.Fatalf("boot %+v, want from the cache", st.Boot)
	}
	shims := d.shimPids()
	if len(shims) != 1 {
		t.Fatalf("shims %v, want one", shims)
	}
	syscall.Kill(shims[0], syscall.SIGKILL)
	waitFor(t, time.Minute, "containerd to clean up after the dead shim", func() bool {
		_, err := os.Stat(filepath.Join(d.stateRoot, "vc-fac-shimcrash"))
		return os.IsNotExist(err) && !qemuRunning(st.VMPid) && len(mountsUnder(d.State)) == 0
	})
	waitFor(t, 30*time.Second, "the task to go", func() bool {
		return !strings.Contains(d.Ctr(t, "task", "ls"), "RUNNING")
	})
	d.CtrErr(context.Background(), "task", "delete", "vc-fac-shimcrash")
	d.Ctr(t, "container", "delete", "vc-fac-shimcrash")
	d.sandboxGone(t, "vc-fac-shimcrash", st)

	// A container that fails once its sandbox has the cache's VM (its
	// bind mount's source is missing): the VM and its directory go.
	c.waitReady(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := d.CtrErr(ctx, "run", "--rm", "--runtime", containerd.VCRuntime, "--mount", "type=bind,src=/nonexistent/src,dst=/x,options=rbind", images.BusyboxRef, "vc-fac-bad", "true"); err == nil || !strings.Contains(err.Error(), `source "/nonexistent/src"`) {
		t.Errorf("ctr run with a missing bind source: %v (out %q)", err, out)
	}
	d.CtrErr(ctx, "container", "delete", "vc-fac-bad")
	d.waitNoShims(t)
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after a failed create: %s", left)
	}
	waitFor(t, 10*time.Second, "the failed sandbox's vm to go", func() bool { return c.status(t).Running == 0 })
	if cs := c.status(t); cs.Taken != 3 {
		t.Errorf("cache: %+v, want 3 taken", cs)
	}
	c.waitReady(t)
	ready := c.readyPids(t)
	if ents, _ := os.ReadDir(filepath.Join(dir, "cache")); len(ents) != len(ready) {
		t.Errorf("cache vm directories %v, want only the %d ready ones", ents, len(ready))
	}
	c.stop(t)
	t.Logf("took %s", time.Since(begin).Round(time.Millisecond))
}
