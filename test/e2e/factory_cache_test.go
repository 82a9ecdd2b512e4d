package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
)

// waitCacheReady waits until the factory's cache in dir has n VMs ready.
func waitCacheReady(ctx context.Context, t *testing.T, dir string, n int) vcfactory.CacheStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := vcfactory.QueryCache(ctx, dir)
		if err == nil && st.Ready >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache of %s: %d ready after 2 min (want %d): %+v %v", dir, st.Ready, n, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vmRunning tells whether pid is a running QEMU.
func vmRunning(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte("qemu-system"))
}

// A factory's cache keeps a VM of the template started and hands it to
// the next sandbox that fits: the sandbox runs containers in it with its
// own hostname and random pool, its directory goes with the sandbox, the
// cache starts another; a sandbox publishing ports starts from the
// template instead; stopping the cache stops the VM nobody took and
// leaves the taken one running.
func TestFactoryCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	dir := newFactory(ctx, t)
	cctx, stopCache := context.WithCancel(ctx)
	defer stopCache()
	served := make(chan error, 1)
	go func() { served <- vcfactory.ServeCache(cctx, dir, 1) }()
	waitCacheReady(ctx, t, dir, 1)
	// One cache per factory.
	if err := vcfactory.ServeCache(ctx, dir, 1); err == nil || !strings.Contains(err.Error(), "already serves") {
		t.Errorf("a second cache of one factory: %v", err)
	}

	h := factoryHypervisor()
	h.Factory = dir
	cgParent := cgroupParent(t, "cache")
	var rnd []string
	var sandboxes []*vc.Sandbox
	for _, id := range []string{"e2e-cache-a", "e2e-cache-b"} {
		waitCacheReady(ctx, t, dir, 1)
		begin := time.Now()
		cfg := vc.SandboxConfig{ID: id, StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir)}
		if id == "e2e-cache-b" {
			// A cached VM is moved into the sandbox's cgroup.
			cfg.Cgroup = vc.CgroupConfig{Path: cgParent + "/" + id}
		}
		s := createSandbox(ctx, t, cfg)
		st := s.Status()
		if cfg.Cgroup.Path != "" {
			checkThreadsInCgroup(t, st.VMPid, cfg.Cgroup.Path)
		}
		t.Logf("sandbox %s from the cache in %s", id, time.Since(begin).Round(time.Millisecond))
		if !st.Boot.FromCache || !st.Boot.FromTemplate {
			t.Fatalf("sandbox %s: not from the cache: %+v", id, st.Boot)
		}
		if filepath.Dir(st.VMDir) != filepath.Join(dir, "cache") {
			t.Errorf("sandbox %s: vm dir %q, want one of %s/cache", id, st.VMDir, dir)
		}
		// Under TCG the cache warmed the VM with a container of its
		// own, removed (with its tmpfs root) before the VM was ready.
		console, err := os.ReadFile(st.ConsoleLog)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{`msg="container removed" component=vc-agent container_id=vc-cache-warm`, `msg="storage unmounted" component=vc-agent mount_point=/run/vc-cache-warm`} {
			if !strings.Contains(string(console), want) {
				t.Errorf("sandbox %s: the guest's console has no %q:\n%s", id, want, console)
			}
		}
		out := runInSandbox(ctx, t, s, root, "c", "sh", "-c", "hostname; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !strings.HasPrefix(id, lines[0]) {
			t.Fatalf("sandbox %s: output %q", id, out)
		}
		rnd = append(rnd, lines[1])
		sandboxes = append(sandboxes, s)
	}
	if rnd[0] == rnd[1] {
		t.Errorf("two sandboxes of the cache read the same random bytes: %q", rnd)
	}
	st := waitCacheReady(ctx, t, dir, 1)
	if st.Taken != 2 || st.Running != 2 {
		t.Errorf("cache status %+v, want 2 taken, 2 running", st)
	}

	// Deleting a sandbox removes the VM's directory it took.
	a := sandboxes[0]
	aDir, aPid := a.Status().VMDir, a.Status().VMPid
	if err := a.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(aDir); !os.IsNotExist(err) {
		t.Errorf("vm dir %s of a deleted sandbox: %v", aDir, err)
	}
	if vmRunning(aPid) {
		t.Errorf("qemu %d of a deleted sandbox runs", aPid)
	}

	// -p: the cached VM's NAT forwards no ports; the template serves.
	hp := freePort(t)
	pcg := cgParent + "/e2e-cache-p"
	p := createSandbox(ctx, t, vc.SandboxConfig{ID: "e2e-cache-p", StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir),
		NAT:    vc.NATConfig{Publish: []vc.PortMapping{{HostIP: "127.0.0.1", HostPort: hp, ContainerPort: 80, Protocol: "tcp"}}},
		Cgroup: vc.CgroupConfig{Path: pcg}})
	if b := p.Status().Boot; b.FromCache || !b.FromTemplate {
		t.Errorf("sandbox publishing a port: %+v, want from the template, not the cache", b)
	}
	// Started from the template in its cgroup.
	checkThreadsInCgroup(t, p.Status().VMPid, pcg)

	// A ready VM that dies is replaced.
	dead := readyCacheVMs(t, dir)
	if len(dead) != 1 {
		t.Fatalf("ready vms of the cache: %v", dead)
	}
	if err := syscall.Kill(dead[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := vcfactory.QueryCache(ctx, dir)
		if now := readyCacheVMs(t, dir); err == nil && st.Ready == 1 && len(now) == 1 && now[0] != dead[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache did not replace its killed vm %d: %+v %v, ready %v", dead[0], st, err, readyCacheVMs(t, dir))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Stopping the cache stops its ready VM; the taken one runs on.
	ready := readyCacheVMs(t, dir)
	if len(ready) != 1 {
		t.Fatalf("ready vms of the cache: %v", ready)
	}
	if err := vcfactory.StopCache(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("cache: %v", err)
	}
	for _, pid := range ready {
		if vmRunning(pid) {
			t.Errorf("ready vm %d of a stopped cache runs", pid)
		}
	}
	if _, err := vcfactory.QueryCache(ctx, dir); err == nil {
		t.Errorf("a stopped cache answers")
	}
	if out := runInSandbox(ctx, t, sandboxes[1], root, "c2", "echo", "after"); strings.TrimSpace(out) != "after" {
		t.Errorf("sandbox of a stopped cache: %q", out)
	}

	// A damaged template: no cache serves it, and the error says why.
	if err := os.Truncate(filepath.Join(dir, "state"), 1000); err != nil {
		t.Fatal(err)
	}
	if err := vcfactory.ServeCache(ctx, dir, 1); !errors.Is(err, vcfactory.ErrTemplateInvalid) || !strings.Contains(err.Error(), "state file") {
		t.Errorf("cache of a damaged template: %v, want an error naming the state file", err)
	}
	if left := readyCacheVMs(t, dir); len(left) != 0 {
		t.Errorf("vms of a damaged template's cache: %v", left)
	}
}

// readyCacheVMs are the pids of the VMs of dir's cache nobody took (but
// for one still starting, without a pid yet).
func readyCacheVMs(t *testing.T, dir string) []int {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "cache"))
	var pids []int
	for _, e := range ents {
		d := filepath.Join(dir, "cache", e.Name())
		if _, err := os.Stat(filepath.Join(d, "taken")); err == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "vm", "qemu.pid"))
		if os.IsNotExist(err) {
			continue // still starting
		}
		if err != nil {
			t.Fatalf("cache vm %s: %v", d, err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		pids = append(pids, pid)
	}
	return pids
}

// vc factory cache: runs take its VMs; one whose owner is killed loses
// its VM; status shows the cache; destroy stops it and kills its ready
// VM.
func TestFactoryCacheCLI(t *testing.T) {
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	dr := t.TempDir()
	fdir := filepath.Join(dr, "factory")
	img := []string{"--kernel", kernel, "--initrd", initrd, "--accel", "tcg"}
	if out, errOut, code := vcIn(t, dr, append([]string{"factory", "init"}, img...)...); code != 0 {
		t.Fatalf("factory init: %d %q %q", code, out, errOut)
	}
	t.Cleanup(func() { vcfactory.Destroy(fdir) })
	var cacheLog syncBuffer
	cache := exec.Command(vcBin, "--state-root", stateRoot, "--data-root", dr, "factory", "cache", "--size", "1")
	cache.Stdout, cache.Stderr = &cacheLog, &cacheLog
	if err := cache.Start(); err != nil {
		t.Fatal(err)
	}
	cacheDone := make(chan error, 1)
	go func() { cacheDone <- cache.Wait() }()
	defer func() {
		cache.Process.Kill()
		<-cacheDone
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitCacheReady(ctx, t, fdir, 1)
	if out, _, _ := vcIn(t, dr, "factory", "status"); !regexp.MustCompile(`cache\s+pid \d+, 1 of 1 ready`).MatchString(out) {
		t.Errorf("status: %q", out)
	}

	id := "e2e-cachecli"
	run := append([]string{"run", "-d", "--name", id, "--factory", "on", "--rootfs", root}, img...)
	if out, errOut, code := vcIn(t, dr, append(run, "--", "sleep", "60")...); code != 0 {
		t.Fatalf("run: %d %q %q", code, out, errOut)
	}
	defer func() {
		vcIn(t, dr, "rm", "-f", id)
		noLeftovers(t, id)
	}()
	st, err := vc.StatusSandbox(ctx, stateRoot, id)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Boot.FromCache {
		t.Fatalf("run: not from the cache: %+v", st.Boot)
	}
	if out, errOut, code := vcIn(t, dr, "exec", id, "hostname"); code != 0 || strings.TrimSpace(out) != id {
		t.Errorf("exec hostname: %d %q %q", code, out, errOut)
	}
	// The VM goes with its owner, as a VM the owner started itself.
	if err := syscall.Kill(st.OwnerPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for vmRunning(st.VMPid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if vmRunning(st.VMPid) {
		t.Errorf("the cache's vm %d runs on after its owner %d was killed", st.VMPid, st.OwnerPid)
	}
	if out, _, _ := vcIn(t, dr, "ps", "-a"); !strings.Contains(out, "exited") {
		t.Errorf("ps after the owner was killed: %q", out)
	}
	if _, errOut, code := vcIn(t, dr, "rm", "-f", id); code != 0 {
		t.Errorf("rm: %d %q", code, errOut)
	}
	if _, err := os.Stat(st.VMDir); !os.IsNotExist(err) {
		t.Errorf("vm dir %s after rm: %v", st.VMDir, err)
	}

	waitCacheReady(ctx, t, fdir, 1)
	ready := readyCacheVMs(t, fdir)
	if out, errOut, code := vcIn(t, dr, "factory", "destroy"); code != 0 {
		t.Fatalf("destroy: %d %q %q", code, out, errOut)
	}
	select {
	case <-cacheDone:
	case <-time.After(30 * time.Second):
		t.Fatalf("the cache did not stop on destroy:\n%s", cacheLog.String())
	}
	cacheDone <- nil // for the deferred kill
	for _, pid := range ready {
		if vmRunning(pid) {
			t.Errorf("ready vm %d of a destroyed factory runs", pid)
		}
	}
	noFactoryLeft(t, fdir)
	if !strings.Contains(cacheLog.String(), "vm taken") || !strings.Contains(cacheLog.String(), "owner of a taken vm exited") {
		t.Errorf("cache log:\n%s", cacheLog.String())
	}
}
