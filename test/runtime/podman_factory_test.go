package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/testutil/images"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
)

// vmSandboxID is vc-runtime's sandbox id of a container's VM in the
// container's directory (cmd/vc-runtime sandboxID): its pkg/vc state is
// <root>/<container id>/vm.
const vmSandboxID = "vm"

// netnsFactory makes a template for vc-runtime's containers that join a
// network namespace (podman's and docker's: the namespace's NICs are
// hotplugged into the restored VM, so no NAT NIC) in dir, of the guest
// image vc-runtime resolves under dataRoot, at the size and with the
// parameters vc-runtime gives a container without limits and without
// --debug; it is destroyed when the test ends.
func netnsFactory(ctx context.Context, t *testing.T, dir string) {
	t.Helper()
	t.Setenv("VC_AGENT", agentBin) // the image vc-runtime resolves: this agent's
	kernel, initrd, err := guestconfig.Resolve(ctx, dataRoot, "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if _, err := vcfactory.Init(ctx, dir, vcfactory.Config{
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg"},
		NoNAT:      true,
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("template made in %s", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := vcfactory.Destroy(dir); err != nil {
			t.Errorf("destroy the factory: %v", err)
		}
	})
}

// containerDirOf is vc-runtime's directory of container id under the
// roots matching rootGlob: the one whose state file names id (a
// directory is named by the id, or by the id cut short and a hash when a
// long root would make the VM's socket paths too long).
func containerDirOf(t *testing.T, rootGlob, id string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(rootGlob, "*", "state.json"))
	var dirs []string
	for _, f := range files {
		var st struct {
			ID string `json:"id"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &st) == nil && st.ID == id {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("vc-runtime's directories of container %q under %s: %v, want one (state files %v)", id, rootGlob, dirs, files)
	}
	return dirs[0]
}

// factoryDir is a short directory for a factory (a cache's VM sockets
// are under it, and must fit in sun_path), removed when the test ends.
func factoryDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vcpf-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "f")
}

// qemuOf tells whether pid is a running QEMU whose command line names
// dir.
func qemuOf(pid int, dir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte("qemu-system")) && bytes.Contains(b, []byte(dir))
}

// waitGone waits up to 20 s for the QEMU pid (of dir) to exit.
func waitGone(t *testing.T, pid int, dir string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for qemuOf(pid, dir) {
		if time.Now().After(deadline) {
			t.Errorf("qemu %d (%s) still runs", pid, dir)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and a reader.
type syncBuffer = testutil.SyncBuffer

// TestPodmanFactory: podman --runtime-flag factory=DIR run --rm (podman
// adds --factory=DIR to vc-runtime's global options): the container's VM
// resumes the template, made without the NAT NIC (podman's network
// namespace's NIC is hotplugged into it), and the container has its own
// hostname (podman's short id), eth0 with the address podman gave it,
// and a working network (the host reaches its httpd at that address);
// nothing is left.
func TestPodmanFactory(t *testing.T) {
	podman(t, "--version") // skips without podman; loads the images
	path, _ := exec.LookPath("podman")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := factoryDir(t)
	netnsFactory(ctx, t, dir)

	// run -i: the container reports, then waits on its stdin while the
	// test looks at it; closing stdin ends it, and --rm removes it.
	cidFile := filepath.Join(t.TempDir(), "cid")
	script := `mkdir -p /www && hostname > /www/index.html && httpd -p 80 -h /www && ` +
		`hostname && ip -4 -o addr show eth0 && echo ready && read x && echo bye`
	args := append([]string{"--runtime-flag", "factory=" + dir}, podmanRun...)
	args = append(args, "--rm", "-i", "--cidfile", cidFile, images.BusyboxRef, "sh", "-c", script)
	cmd := podmanCmd(ctx, path, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if b, _ := os.ReadFile(cidFile); len(b) > 0 {
			cid := strings.TrimSpace(string(b))
			podman(t, "rm", "-f", "-t", "0", cid)
			noneLeft(t, cid)
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "ready\n") {
		if time.Now().After(deadline) {
			t.Fatalf("podman run: no ready in %q; stderr %q", out.String(), errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("podman run from the template: the container's output in %s", time.Since(begin).Round(time.Millisecond))
	b, _ := os.ReadFile(cidFile)
	cid := strings.TrimSpace(string(b))
	if len(cid) != 64 {
		t.Fatalf("cid file: %q", b)
	}
	cdir := containerDirOf(t, podmanRoot, cid)
	st, err := vc.StatusSandbox(ctx, cdir, vmSandboxID)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Boot.FromTemplate || st.Boot.FromCache {
		t.Errorf("the container's VM: %+v, want from the template (no cache runs)", st.Boot)
	}
	if st.Config.Hypervisor.Factory != dir || st.Config.NetNS == "" {
		t.Errorf("the VM's factory %q, netns %q: want %s and podman's namespace", st.Config.Hypervisor.Factory, st.Config.NetNS, dir)
	}
	ip, _, _ := podman(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", cid)
	ip = strings.TrimSpace(ip)
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 4 || lines[0] != cid[:12] {
		t.Errorf("hostname: %q, want podman's %s", lines, cid[:12])
	}
	if ip == "" || !regexp.MustCompile(`(?m)^\d+: eth0\s+inet `+regexp.QuoteMeta(ip)+`/`).MatchString(out.String()) {
		t.Errorf("the container's eth0: %q, want podman's address %q", out.String(), ip)
	}
	// From the host to the container's address, through podman's bridge
	// and the NIC hotplugged into the VM.
	if ip != "" {
		if body := httpGet(t, "http://"+ip+"/"); body != cid[:12]+"\n" {
			t.Errorf("GET http://%s/: %q, want the container's hostname", ip, body)
		}
	}
	vmPid := st.VMPid
	if !qemuOf(vmPid, cdir) {
		t.Errorf("vm pid %d: not the container's qemu", vmPid)
	}

	io.WriteString(stdin, "go\n")
	stdin.Close()
	err = cmd.Wait()
	waited = true
	if err != nil || !strings.HasSuffix(out.String(), "bye\n") {
		t.Errorf("podman run: %v, %q; stderr %q", err, out.String(), errOut.String())
	}
	noneLeft(t, cid)
	waitGone(t, vmPid, cdir)
}

// TestPodmanFactoryCache: with the factory's cache serving (one VM),
// podman --runtime-flag factory=DIR run -d takes the cache's VM (its
// owner, the container's pid, is the process the cache watches), exec
// runs in it (hostname, eth0 with podman's address), the host reaches the
// container's httpd at that address, and rm -f stops the VM and removes
// its directory; the cache then starts another. A container whose pid
// (the VM's owner) is killed loses its VM to the cache, exits with 137,
// and rm removes the VM's directory.
func TestPodmanFactoryCache(t *testing.T) {
	podman(t, "--version") // skips without podman; loads the images
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := factoryDir(t)
	netnsFactory(ctx, t, dir)
	// The cache logs through the default logger: kept here too.
	var cacheLog syncBuffer
	prevLog := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, &cacheLog), nil)))
	defer slog.SetDefault(prevLog)
	cctx, stopCache := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- vcfactory.ServeCache(cctx, dir, 1) }()
	defer func() {
		stopCache()
		if err := <-served; err != nil {
			t.Errorf("cache: %v", err)
		}
	}()
	begin := time.Now()
	cacheReady(ctx, t, dir, 1)
	t.Logf("cache ready in %s", time.Since(begin).Round(time.Millisecond))

	const name = "vc-runtime-test-factory-cache"
	var cid string
	defer func() {
		podman(t, "rm", "-f", "-t", "0", name)
		if cid != "" {
			noneLeft(t, cid)
		}
	}()
	cidFile := filepath.Join(t.TempDir(), "cid")
	begin = time.Now()
	args := append([]string{"--runtime-flag", "factory=" + dir}, podmanRun...)
	_, errOut, code := podman(t, append(args, "-d", "--name", name, "--cidfile", cidFile, images.BusyboxRef,
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www")...)
	if code != 0 {
		t.Fatalf("podman run -d: exit %d: %s", code, errOut)
	}
	t.Logf("podman run -d from the cache: %s", time.Since(begin).Round(time.Millisecond))
	b, _ := os.ReadFile(cidFile)
	cid = strings.TrimSpace(string(b))
	st, err := vc.StatusSandbox(ctx, containerDirOf(t, podmanRoot, cid), vmSandboxID)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Boot.FromCache || !st.Boot.FromTemplate {
		t.Fatalf("the container's VM: %+v, want from the cache", st.Boot)
	}
	if filepath.Dir(st.VMDir) != filepath.Join(dir, "cache") {
		t.Errorf("the VM's directory %q, want one of %s/cache", st.VMDir, dir)
	}
	if !qemuOf(st.VMPid, st.VMDir) {
		t.Errorf("vm pid %d: not the cache's qemu of %s", st.VMPid, st.VMDir)
	}
	pid, _, _ := podman(t, "inspect", "--format", "{{.State.Pid}}", name)
	if strings.TrimSpace(pid) != strconv.Itoa(st.OwnerPid) {
		t.Errorf("the container's pid %q, the VM's owner %d", pid, st.OwnerPid)
	}
	taken, err := os.ReadFile(filepath.Join(st.VMDir, "taken"))
	if err != nil || !strings.Contains(string(taken), `"owner_pid":`+strconv.Itoa(st.OwnerPid)) {
		t.Errorf("the cache's record of the taken VM: %q, %v; want owner %d", taken, err, st.OwnerPid)
	}

	out, errOut, code := podman(t, "exec", name, "sh", "-c", "hostname; ip -4 -o addr show eth0")
	ip, _, _ := podman(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name)
	ip = strings.TrimSpace(ip)
	if code != 0 || !strings.HasPrefix(out, cid[:12]+"\n") || ip == "" ||
		!regexp.MustCompile(`(?m)^\d+: eth0\s+inet `+regexp.QuoteMeta(ip)+`/`).MatchString(out) {
		t.Errorf("podman exec: exit %d, %q (stderr %s); want hostname %s and eth0 with %q", code, out, errOut, cid[:12], ip)
	}
	if ip != "" {
		if body := httpGet(t, "http://"+ip+"/"); body != cid[:12]+"\n" {
			t.Errorf("GET http://%s/: %q, want the container's hostname", ip, body)
		}
	}
	if cs, err := vcfactory.QueryCache(ctx, dir); err != nil || cs.Taken != 1 || cs.Running != 1 {
		t.Errorf("cache status %+v, %v; want 1 taken, running", cs, err)
	}

	if _, errOut, code := podman(t, "rm", "-f", "-t", "0", name); code != 0 {
		t.Fatalf("podman rm -f: exit %d: %s", code, errOut)
	}
	noneLeft(t, cid)
	waitGone(t, st.VMPid, st.VMDir)
	if _, err := os.Stat(st.VMDir); !os.IsNotExist(err) {
		t.Errorf("the taken VM's directory %s after rm: %v", st.VMDir, err)
	}
	cid = ""
	waitCache(ctx, t, dir, "1 ready, 1 taken, none running", func(cs vcfactory.CacheStatus) bool {
		return cs.Ready == 1 && cs.Taken == 1 && cs.Running == 0
	})

	// The container's pid (the VM's owner) killed: the cache kills the
	// VM it handed out, podman sees the container exit, and rm removes
	// the VM's directory.
	_, errOut, code = podman(t, append(args, "-d", "--name", name, "--cidfile", cidFile+"2", images.BusyboxRef, "sleep", "300")...)
	if code != 0 {
		t.Fatalf("podman run -d (2): exit %d: %s", code, errOut)
	}
	b, _ = os.ReadFile(cidFile + "2")
	cid = strings.TrimSpace(string(b))
	if st, err = vc.StatusSandbox(ctx, containerDirOf(t, podmanRoot, cid), vmSandboxID); err != nil {
		t.Fatal(err)
	}
	if !st.Boot.FromCache {
		t.Fatalf("the second container's VM: %+v, want from the cache", st.Boot)
	}
	if err := syscall.Kill(st.OwnerPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, st.VMPid, st.VMDir)
	if !strings.Contains(cacheLog.String(), "the owner of a taken vm exited: killing the vm") {
		t.Errorf("the cache did not kill the VM of the killed owner; its log:\n%s", cacheLog.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, _ := podman(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
		if strings.TrimSpace(out) == "exited 137" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after its pid was killed the container is %q, want exited 137", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, errOut, code := podman(t, "rm", name); code != 0 {
		t.Fatalf("podman rm: exit %d: %s", code, errOut)
	}
	noneLeft(t, cid)
	if _, err := os.Stat(st.VMDir); !os.IsNotExist(err) {
		t.Errorf("the taken VM's directory %s after its owner was killed and rm: %v", st.VMDir, err)
	}
	cid = ""
	waitCache(ctx, t, dir, "2 taken, none running", func(cs vcfactory.CacheStatus) bool { return cs.Taken == 2 && cs.Running == 0 })
}

// cacheReady waits until the factory's cache in dir has n VMs ready.
func cacheReady(ctx context.Context, t *testing.T, dir string, n int) vcfactory.CacheStatus {
	t.Helper()
	return waitCache(ctx, t, dir, fmt.Sprintf("%d ready", n), func(st vcfactory.CacheStatus) bool { return st.Ready >= n })
}

// waitCache waits up to a minute until the status of the factory's cache
// in dir is what ok wants (what describes it).
func waitCache(ctx context.Context, t *testing.T, dir, what string, ok func(vcfactory.CacheStatus) bool) vcfactory.CacheStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := vcfactory.QueryCache(ctx, dir)
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache of %s: %+v, %v after a minute; want %s", dir, st, err, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
