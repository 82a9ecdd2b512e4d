package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/network/nstest"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

func factoryHypervisor() vc.HypervisorConfig {
	return vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256}
}

// newFactory makes a template in a directory of the test's; the cleanup
// destroys it and checks that nothing is left.
func newFactory(ctx context.Context, t *testing.T) string {
	t.Helper()
	return newFactoryNet(ctx, t, false)
}

// newFactoryNet is newFactory, of a template without the NAT NIC when
// noNAT.
func newFactoryNet(ctx context.Context, t *testing.T, noNAT bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "factory")
	begin := time.Now()
	if _, err := vcfactory.Init(ctx, dir, vcfactory.Config{Hypervisor: factoryHypervisor(), NoNAT: noNAT}); err != nil {
		t.Fatal(err)
	}
	t.Logf("factory init took %s", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := vcfactory.Destroy(dir); err != nil {
			t.Errorf("destroy: %v", err)
		}
		noFactoryLeft(t, dir)
	})
	// No process stays once the template is made.
	if out, _ := exec.Command("pgrep", "-f", "qemu-system.*factory-template.*"+dir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("template qemu still running: %s", out)
	}
	return dir
}

func noFactoryLeft(t *testing.T, dir string) {
	t.Helper()
	ents, _ := filepath.Glob(dir + "*")
	if len(ents) > 0 {
		t.Errorf("factory left files: %v", ents)
	}
	// (A sandbox started from the template runs on: its QEMU names the
	// memory file, but it is no template VM.)
	if out, _ := exec.Command("pgrep", "-f", "qemu-system.*factory-template.*"+dir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("factory left its template's qemu: %s", out)
	}
}

// runInSandbox runs args in a new container of s and returns its output.
func runInSandbox(ctx context.Context, t *testing.T, s *vc.Sandbox, root, cid string, args ...string) string {
	t.Helper()
	spec := oci.DefaultSpec(args, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create %s: %v", cid, err)
	}
	var out syncBuffer
	streams := s.Container(cid).IOStream(ctx, cid, vc.IO{Stdout: &out, Stderr: &out})
	if err := s.Container(cid).Start(ctx); err != nil {
		t.Fatalf("start %s: %v", cid, err)
	}
	code, err := s.Container(cid).Wait(ctx)
	<-streams
	if err != nil || code != 0 {
		t.Fatalf("%s %q: exit %d %v: %s", cid, args, code, err, out.String())
	}
	if err := s.Container(cid).Delete(ctx); err != nil {
		t.Fatalf("delete %s: %v", cid, err)
	}
	return out.String()
}

// Two sandboxes start from one template: each runs containers, with its
// own hostname, random pool and clock, and exec works.
func TestFactoryTwoSandboxes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	dir := newFactory(ctx, t)
	var boots []string
	for i, id := range []string{"e2e-fac-a", "e2e-fac-b"} {
		h := factoryHypervisor()
		h.Factory = dir
		begin := time.Now()
		s := createSandbox(ctx, t, vc.SandboxConfig{ID: id, StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir)})
		took := time.Since(begin)
		st := s.Status()
		if !st.Boot.FromTemplate {
			t.Fatalf("sandbox %s did not start from the template: %+v", id, st.Boot)
		}
		t.Logf("sandbox %s from the template in %s (vm %s, agent %s, setup %s)", id, took.Round(time.Millisecond),
			st.Boot.VMStart.Round(time.Millisecond), st.Boot.AgentReady.Round(time.Millisecond), st.Boot.SandboxSetup.Round(time.Millisecond))
		out := runInSandbox(ctx, t, s, root, "c", "sh", "-c", "hostname; cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("output %q", out)
		}
		if lines[0] != id[:min(len(id), 12)] && !strings.HasPrefix(id, lines[0]) {
			t.Errorf("hostname %q in sandbox %s", lines[0], id)
		}
		boots = append(boots, lines[1]+" "+lines[2])
		if i == 1 && boots[0] == boots[1] {
			t.Errorf("two sandboxes of one template read the same random bytes: %q", boots)
		}
		now, err := strconv.ParseInt(lines[3], 10, 64)
		if d := now - time.Now().Unix(); err != nil || d < -10 || d > 10 {
			t.Errorf("guest clock %q, host %d", lines[3], time.Now().Unix())
		}
		// exec in a running container.
		spec := oci.DefaultSpec([]string{"sleep", "60"}, nil, "/", false)
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "sl", Rootfs: root, Spec: spec}); err != nil {
			t.Fatal(err)
		}
		if err := s.Container("sl").Start(ctx); err != nil {
			t.Fatal(err)
		}
		var eout syncBuffer
		c := s.Container("sl")
		if err := c.Exec(ctx, "e1", &specs.Process{Args: []string{"echo", "exec-ok"}, Env: []string{"PATH=/bin:/usr/bin"}}); err != nil {
			t.Fatalf("exec: %v", err)
		}
		streams := c.IOStream(ctx, "e1", vc.IO{Stdout: &eout})
		code, err := c.WaitProcess(ctx, "e1")
		<-streams
		if err != nil || code != 0 || strings.TrimSpace(eout.String()) != "exec-ok" {
			t.Errorf("exec: %d %v %q", code, err, eout.String())
		}
	}
}

// A template whose state file is truncated is refused before anything
// starts, naming the file; nothing is left.
func TestFactoryCorruptState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := newFactory(ctx, t)
	state := filepath.Join(dir, "state")
	st, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(state, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	h := factoryHypervisor()
	h.Factory = dir
	_, err = vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-fac-bad", StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir)})
	if !errors.Is(err, vcfactory.ErrTemplateInvalid) || !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "state file") {
		t.Fatalf("truncated state: %v", err)
	}
	t.Logf("refused: %v", err)
	noLeftovers(t, "e2e-fac-bad")
}

// A truncated state file whose manifest was made to agree gets past the
// checks to QEMU, whose load fails: the error says so, and no process or
// state is left.
func TestFactoryCorruptStateReachesQEMU(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := newFactory(ctx, t)
	state := filepath.Join(dir, "state")
	st, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(state, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(state)
	sum := sha256.Sum256(b)
	mpath := filepath.Join(dir, "manifest.json")
	mb, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	m["state"] = map[string]any{"size": len(b), "sha256": hex.EncodeToString(sum[:])}
	mb, _ = json.Marshal(m)
	if err := os.WriteFile(mpath, mb, 0o600); err != nil {
		t.Fatal(err)
	}
	h := factoryHypervisor()
	h.Factory = dir
	_, err = vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-fac-qemu", StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir)})
	if !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "state did not load") || !strings.Contains(err.Error(), "load of migration failed") {
		t.Fatalf("truncated state past the manifest: %v", err)
	}
	t.Logf("refused: %.600s", err)
	noLeftovers(t, "e2e-fac-qemu")
}

// vcIn runs the vc CLI with data root dr (a factory of the test's own:
// the shared data root's would serve every other test's vc run).
func vcIn(t *testing.T, dr string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return vcWith(t, dr, nil, args...)
}

// vc factory init, status, destroy; vc run starts from the template, and
// refuses (--factory on) a VM that does not fit it.
func TestFactoryCLI(t *testing.T) {
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	dr := t.TempDir()
	img := []string{"--kernel", kernel, "--initrd", initrd, "--accel", "tcg"}
	if out, _, code := vcIn(t, dr, "factory", "status"); code != 0 || !strings.Contains(out, "no template") {
		t.Fatalf("status without a factory: %d %q", code, out)
	}
	if out, errOut, code := vcIn(t, dr, append([]string{"factory", "init"}, img...)...); code != 0 || !strings.Contains(out, "template made") {
		t.Fatalf("factory init: %d %q %q", code, out, errOut)
	}
	t.Cleanup(func() { vcfactory.Destroy(filepath.Join(dr, "factory")) })
	if out, _, code := vcIn(t, dr, "factory", "status"); code != 0 || !regexp.MustCompile(`ready\s+yes`).MatchString(out) {
		t.Fatalf("status: %d %q", code, out)
	}
	id := "e2e-fac-cli"
	run := append([]string{"run", "-d", "--name", id, "--factory", "on", "--rootfs", root}, img...)
	if out, errOut, code := vcIn(t, dr, append(run, "--", "sleep", "60")...); code != 0 {
		t.Fatalf("run: %d %q %q", code, out, errOut)
	}
	defer func() {
		vcIn(t, dr, "rm", "-f", id)
		noLeftovers(t, id)
	}()
	if out, _, _ := vcIn(t, dr, "inspect", id); !strings.Contains(out, `"from_template": true`) {
		t.Errorf("inspect: not started from the template:\n%s", out)
	}
	if out, errOut, code := vcIn(t, dr, "exec", id, "hostname"); code != 0 || strings.TrimSpace(out) != id {
		t.Errorf("exec hostname: %d %q %q", code, out, errOut)
	}
	// Another size does not fit: refused with --factory on, naming the
	// field, before any VM starts.
	bad := append([]string{"run", "--rm", "--name", "e2e-fac-cli-bad", "--factory", "on", "-m", "512M", "--rootfs", root}, img...)
	if _, errOut, code := vcIn(t, dr, append(bad, "--", "true")...); code == 0 || !strings.Contains(errOut, "hypervisor.memory_mib") {
		t.Errorf("run -m 512M --factory on: %d %q", code, errOut)
	}
	noLeftovers(t, "e2e-fac-cli-bad")
	// A damaged template is never booted from: --factory on refuses it
	// with the way out, the default (auto) boots and says why; status
	// says why.
	if err := os.Truncate(filepath.Join(dr, "factory", "state"), 1000); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := vcIn(t, dr, "factory", "status"); !regexp.MustCompile(`ready\s+no: .*state file`).MatchString(out) {
		t.Errorf("status of a truncated template: %q", out)
	}
	dmg := append([]string{"run", "--rm", "--name", "e2e-fac-cli-dmg", "--factory", "on", "--rootfs", root}, img...)
	if _, errOut, code := vcIn(t, dr, append(dmg, "--", "true")...); code == 0 || !strings.Contains(errOut, "state file") || !strings.Contains(errOut, "vc factory init") {
		t.Errorf("run --factory on, on a truncated template: %d %q", code, errOut)
	}
	noLeftovers(t, "e2e-fac-cli-dmg")
	dmg = append([]string{"run", "--rm", "--name", "e2e-fac-cli-dmg2", "--rootfs", root}, img...)
	if out, errOut, code := vcIn(t, dr, append(dmg, "--", "echo", "booted")...); code != 0 || strings.TrimSpace(out) != "booted" || !strings.Contains(errOut, "booting, not starting from the template") || !strings.Contains(errOut, "state file") {
		t.Errorf("run (auto) on a truncated template: %d %q %q, want a boot that says why", code, out, errOut)
	}
	noLeftovers(t, "e2e-fac-cli-dmg2")
	if out, errOut, code := vcIn(t, dr, "factory", "destroy"); code != 0 {
		t.Fatalf("destroy: %d %q %q", code, out, errOut)
	}
	noFactoryLeft(t, filepath.Join(dr, "factory"))
	// The sandbox from the destroyed template runs on.
	if out, errOut, code := vcIn(t, dr, "exec", id, "echo", "still"); code != 0 || strings.TrimSpace(out) != "still" {
		t.Errorf("exec after destroy: %d %q %q", code, out, errOut)
	}
}

// A sandbox joining a network namespace starts from a template without
// the NAT NIC: its NIC is hotplugged into the restored VM, and a
// container reaches a server in the peer namespace through it.
func TestFactoryNetworkNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, b := nstest.New(t, "fa"), nstest.New(t, "fb")
	nstest.Veth(t, a, "veth0", []string{"10.78.0.1/24"}, b, "peer0", []string{"10.78.0.2/24"})
	srv := servePeer(t, b, "hello-from-B")
	dir := newFactoryNet(ctx, t, true)
	h := factoryHypervisor()
	h.Factory = dir
	// The NAT network does not fit this template.
	if _, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-fac-nat", StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir)}); !errors.Is(err, vcfactory.ErrTemplateMismatch) {
		t.Fatalf("NAT sandbox from a template without NAT: %v", err)
	}
	noLeftovers(t, "e2e-fac-nat")
	const id = "e2e-fac-ns"
	s := createSandbox(ctx, t, vc.SandboxConfig{ID: id, StateRoot: stateRoot, NetNS: a.Path, Hypervisor: h, VMSource: vcfactory.Source(dir)})
	if !s.Status().Boot.FromTemplate {
		t.Fatal("not started from the template")
	}
	out, code := runIn(ctx, t, s, "get", "sh", "-c", fmt.Sprintf("ip -4 addr; timeout 20 wget -qO- http://10.78.0.2:%d/", srv.port))
	if code != 0 || !strings.Contains(out, "10.78.0.1/24") || !strings.Contains(out, "hello-from-B") {
		t.Fatalf("container in the namespace's sandbox: exit %d:\n%s", code, out)
	}
	if got := srv.last(); got != "10.78.0.1" {
		t.Errorf("peer saw %q, want 10.78.0.1", got)
	}
}

// The NAT of a sandbox started from the template works: a port it
// publishes reaches a busybox httpd in it from the host's loopback, and
// the guest has the NAT's address and default route.
func TestFactoryNATPublish(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	dir := newFactory(ctx, t)
	port := freePort(t)
	h := factoryHypervisor()
	h.Factory = dir
	const id = "e2e-fac-pub"
	s := createSandbox(ctx, t, vc.SandboxConfig{ID: id, StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir),
		NAT: vc.NATConfig{Publish: []vc.PortMapping{{HostIP: "127.0.0.1", HostPort: port, ContainerPort: 80}}}})
	if !s.Status().Boot.FromTemplate {
		t.Fatal("not started from the template")
	}
	out := runInSandbox(ctx, t, s, root, "ip", "sh", "-c", "ip -4 addr show eth0; ip route")
	if !strings.Contains(out, "10.0.2.15/24") || !strings.Contains(out, "default via 10.0.2.2") {
		t.Errorf("guest network:\n%s", out)
	}
	spec := oci.DefaultSpec([]string{"sh", "-c", "mkdir -p /tmp/w && echo from-template > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "web", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := s.Container("web").Start(ctx); err != nil {
		t.Fatal(err)
	}
	var body string
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); strings.Contains(body, "from-template") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET on published port %d: %v, body %q", port, err, body)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
