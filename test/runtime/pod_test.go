package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// qemus are the QEMU processes whose command line names dir.
func qemus(dir string) []int {
	dir = filepath.Clean(dir) + "/"
	return proc.Find(func(args []string) bool {
		return len(args) > 0 && strings.Contains(filepath.Base(args[0]), "qemu") && strings.Contains(strings.Join(args, " "), dir)
	})
}

// joining makes a spec join the network, IPC and UTS namespaces of
// process pid, as podman makes a pod's containers join its
// infrastructure container's.
func joining(pid int) func(*specs.Spec) {
	return func(s *specs.Spec) {
		var ns []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			switch n.Type {
			case specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace:
			default:
				ns = append(ns, n)
			}
		}
		for typ, name := range map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts"} {
			ns = append(ns, specs.LinuxNamespace{Type: typ, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, name)})
		}
		s.Linux.Namespaces = ns
		s.Hostname = ""
	}
}

// TestPodVM: a container whose namespace paths name another container's
// process (its owner) runs in that container's VM: the same kernel boot,
// no QEMU of its own; it exits with its status through run; exec and
// pause reach it; it is killed (137) when the VM's container stops, and
// nothing is left of either.
func TestPodVM(t *testing.T) {
	const host, m1, m2 = "podhost", "podm1", "podm2"
	t.Cleanup(func() {
		for _, id := range []string{m1, m2, host} {
			rt(nil, "delete", "--force", id)
			noLeftovers(t, id)
		}
	})
	runDetached(t, bundle(t, []string{"sleep", "1000"}, func(s *specs.Spec) { s.Hostname = "podhostname" }), host)
	hs := waitStatus(t, host, "running")
	hostBoot := strings.TrimSpace(mustRT(t, "exec", host, "cat", "/proc/sys/kernel/random/boot_id"))

	// In the foreground: the member's output and exit status are run's;
	// its UTS namespace is the VM's (the hostname of the VM's container),
	// which its /etc/hostname says too.
	start := time.Now()
	out, code := rt(nil, "run", "--bundle", bundle(t, []string{"sh", "-c", "cat /proc/sys/kernel/random/boot_id; hostname; cat /etc/hostname; exit 7"}, joining(hs.Pid)), m1)
	took := time.Since(start)
	lines := strings.Fields(out)
	if code != 7 || len(lines) != 3 || lines[0] != hostBoot || lines[1] != "podhostname" || lines[2] != "podhostname" {
		t.Fatalf("run in the pod's VM: exit %d, %q; want 7, the VM's boot id %s and hostname podhostname (twice)", code, out, hostBoot)
	}
	t.Logf("run in a running VM took %s", took.Round(time.Millisecond))
	noLeftovers(t, m1)
	if q := qemus(filepath.Join(stateRoot, host)); len(q) != 1 {
		t.Errorf("QEMU processes of %s: %v, want one", host, q)
	}
	// A member the VM refuses leaves nothing, beside the VM or in it.
	out, code = rt(nil, "create", "--bundle", bundle(t, []string{"true"}, func(s *specs.Spec) {
		joining(hs.Pid)(s)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/nonexistent/vc-runtime-test", Options: []string{"rbind"}})
	}), m1)
	if code != 1 || !strings.Contains(out, "/nonexistent/vc-runtime-test") {
		t.Errorf("create of a member with a missing mount source: exit %d, %q", code, out)
	}
	noLeftovers(t, m1)
	if _, err := os.Stat(filepath.Join(stateRoot, host, "vm", "shared", m1)); !os.IsNotExist(err) {
		t.Errorf("the refused member's share is left in the VM's directory: %v", err)
	}

	// Detached: state, exec, pause reach it; its pid is its own process,
	// which has no QEMU.
	runDetached(t, bundle(t, []string{"sleep", "1000"}, joining(hs.Pid)), m2)
	ms := waitStatus(t, m2, "running")
	if ms.Pid == hs.Pid || ms.Pid <= 0 {
		t.Errorf("member pid %d, VM container's %d", ms.Pid, hs.Pid)
	}
	if q := qemus(filepath.Join(stateRoot, m2)); len(q) != 0 {
		t.Errorf("the member has QEMU processes of its own: %v", q)
	}
	if _, err := os.Stat(filepath.Join(stateRoot, host, "vm", "shared", m2, "rootfs")); err != nil {
		t.Errorf("the member's root is not shared into its pod's VM: %v", err)
	}
	if got := strings.TrimSpace(mustRT(t, "exec", m2, "cat", "/proc/sys/kernel/random/boot_id")); got != hostBoot {
		t.Errorf("exec in the member: boot id %q, want %q", got, hostBoot)
	}
	mustRT(t, "pause", m2)
	waitStatus(t, m2, "paused")
	mustRT(t, "resume", m2)
	waitStatus(t, m2, "running")
	// A container joining the member joins the member's VM.
	out, code = rt(nil, "run", "--bundle", bundle(t, []string{"cat", "/proc/sys/kernel/random/boot_id"}, joining(ms.Pid)), m1)
	if code != 0 || strings.TrimSpace(out) != hostBoot {
		t.Errorf("run joining the member: exit %d, %q; want the VM's boot id %s", code, out, hostBoot)
	}
	noLeftovers(t, m1)

	// A member whose owner was killed (no teardown) is stopped; delete
	// removes it from the VM.
	runDetached(t, bundle(t, []string{"sleep", "1000"}, joining(hs.Pid)), m1)
	s1 := waitStatus(t, m1, "running")
	if err := unix.Kill(s1.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m1, "stopped")
	share := filepath.Join(stateRoot, host, "vm", "shared", m1)
	if _, err := os.Stat(share); err != nil {
		t.Errorf("the killed member's share: %v; want it in the VM until delete", err)
	}
	mustRT(t, "delete", m1)
	noLeftovers(t, m1)
	if _, err := os.Stat(share); !os.IsNotExist(err) {
		t.Errorf("the killed member's share is left in the VM after delete: %v", err)
	}

	// The member stops when the VM goes with its container; joining a
	// stopped container's process fails.
	mustRT(t, "kill", host, "KILL")
	waitStatus(t, host, "stopped")
	waitStatus(t, m2, "stopped")
	expectFail(t, "container does not exist", "state", m1)
	out, code = rt(nil, "create", "--bundle", bundle(t, []string{"true"}, joining(hs.Pid)), m1)
	if code == 0 {
		t.Errorf("create joining a stopped container's process: succeeded (%q)", out)
	}
	noLeftovers(t, m1)
	mustRT(t, "delete", m2)
	mustRT(t, "delete", host)
	noLeftovers(t, m2)
	noLeftovers(t, host)
}

// TestPodVMExitStatus: the process keeping a member (run in the
// foreground) exits 137 when its pod's VM stops under it.
func TestPodVMExitStatus(t *testing.T) {
	const host, m = "podhost2", "podm3"
	t.Cleanup(func() {
		for _, id := range []string{m, host} {
			rt(nil, "delete", "--force", id)
			noLeftovers(t, id)
		}
	})
	runDetached(t, bundle(t, []string{"sleep", "1000"}, nil), host)
	hs := waitStatus(t, host, "running")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "run", "--bundle", bundle(t, []string{"sh", "-c", "echo up; exec sleep 1000"}, joining(hs.Pid)), m)
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitLine(t, lines(outR), "up")
	mustRT(t, "delete", "--force", host)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 137 {
		t.Errorf("member's run after its VM was deleted: exit %d, want 137", code)
	}
	noLeftovers(t, m)
	noLeftovers(t, host)
}

// TestJoinForeignNetns: a namespace path naming a process that is not a
// container's keeps the VM's behaviour for any network namespace: it is
// joined, its links mirrored into the VM.
func TestJoinForeignNetns(t *testing.T) {
	const id = "foreignns"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	holder := exec.CommandContext(ctx, "unshare", "--net", "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		holder.Process.Kill()
		holder.Wait()
		noLeftovers(t, id)
	})
	pid := strconv.Itoa(holder.Process.Pid)
	// unshare may not have entered its namespace yet.
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, _ := os.Readlink("/proc/self/ns/net")
		b, _ := os.Readlink("/proc/" + pid + "/ns/net")
		if b != "" && a != b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("unshare --net did not enter a namespace")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"link", "add", "vcrt-h0", "type", "veth", "peer", "name", "vcrt-c0", "netns", pid},
		{"-n", "", "addr", "add", "10.211.7.2/24", "dev", "vcrt-c0"},
		{"-n", "", "link", "set", "vcrt-c0", "up"},
	} {
		var cmd *exec.Cmd
		if args[0] == "-n" {
			cmd = exec.Command("nsenter", append([]string{"-t", pid, "-n", "ip"}, args[2:]...)...)
		} else {
			cmd = exec.Command("ip", args...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", cmd.Args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", "vcrt-h0").Run() })
	out, code := rt(nil, "run", "--bundle", bundle(t, []string{"ip", "-4", "-o", "addr"}, func(s *specs.Spec) {
		ns := []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/" + pid + "/ns/net"}}
		for _, n := range s.Linux.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		s.Linux.Namespaces = ns
	}), id)
	if code != 0 || !strings.Contains(out, "10.211.7.2/24") {
		t.Errorf("run in the namespace of a process that is no container's: exit %d, %q; want its address 10.211.7.2/24", code, out)
	}
	noLeftovers(t, id)
}

// TestPodmanPod: podman's pods share one VM: the infrastructure
// container (the pause image) boots it, the pod's containers run in it
// (the same kernel boot, one QEMU), reach each other on localhost and
// are reached from the host through the pod's published port; pod
// stop and start stop the VM and boot another for them all, and pod rm -f
// leaves nothing.
func TestPodmanPod(t *testing.T) {
	const pod = "vc-runtime-test-pod"
	busybox := "docker.io/library/busybox:vc-test"
	var ids []string
	t.Cleanup(func() {
		podman(t, "pod", "rm", "-f", "-t", "0", pod)
		for _, id := range ids {
			noneLeft(t, id)
		}
	})
	podman(t, "pod", "rm", "-f", "-t", "0", pod) // a failed run's
	port := freePort(t)
	if _, errOut, code := podman(t, "pod", "create", "--name", pod, "--infra-image", images.PauseRef, "-p", port+":8080"); code != 0 {
		t.Fatalf("podman pod create: exit %d: %s", code, errOut)
	}
	out, errOut, code := podman(t, "pod", "inspect", "--format", "{{.InfraContainerID}}", pod)
	infra := strings.TrimSpace(out)
	if code != 0 || infra == "" {
		t.Fatalf("podman pod inspect: exit %d, %q: %s", code, out, errOut)
	}
	ids = append(ids, infra)
	_, errOut, code, web := cidRun(t, "-d", "--pod", pod, busybox,
		"sh", "-c", "mkdir -p /www && echo hello from web > /www/index.html && exec httpd -f -p 8080 -h /www")
	if code != 0 {
		t.Fatalf("podman run -d --pod (web): exit %d: %s", code, errOut)
	}
	ids = append(ids, web)
	_, errOut, code, other := cidRun(t, "-d", "--pod", pod, busybox, "sleep", "1000")
	if code != 0 {
		t.Fatalf("podman run -d --pod (other): exit %d: %s", code, errOut)
	}
	ids = append(ids, other)

	// One VM: the infrastructure container's QEMU, none of the others'.
	if q := qemus(filepath.Join(podmanRoot, infra)); len(q) != 1 {
		t.Errorf("QEMU processes of the pod's infrastructure container: %v, want one", q)
	}
	for _, id := range []string{web, other} {
		if q := qemus(filepath.Join(podmanRoot, id)); len(q) != 0 {
			t.Errorf("container %s has QEMU processes of its own: %v", id, q)
		}
	}
	hostBoot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	var boots, unames []string
	for _, id := range []string{web, other} {
		b, errOut, code := podman(t, "exec", id, "cat", "/proc/sys/kernel/random/boot_id")
		u, _, _ := podman(t, "exec", id, "uname", "-a")
		if code != 0 || strings.TrimSpace(b) == "" || b == string(hostBoot) {
			t.Fatalf("podman exec %s cat boot_id: exit %d, %q (host's %q): %s", id, code, b, hostBoot, errOut)
		}
		boots, unames = append(boots, b), append(unames, u)
	}
	if boots[0] != boots[1] || unames[0] != unames[1] {
		t.Errorf("the pod's containers are not in one VM: boot ids %q, uname -a %q", boots, unames)
	}

	// Container to container over localhost: the VM's loopback.
	deadline := time.Now().Add(time.Minute)
	for {
		out, errOut, code := podman(t, "exec", other, "wget", "-qO-", "http://127.0.0.1:8080/")
		if code == 0 && out == "hello from web\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wget http://127.0.0.1:8080/ from the pod's other container: exit %d, %q: %s", code, out, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The pod's published port reaches the web container from the host.
	if body := httpGet(t, "http://127.0.0.1:"+port+"/"); body != "hello from web\n" {
		t.Errorf("GET the pod's published port %s: %q, want the web container's page", port, body)
	}
	// run --rm in the pod: its exit status, and nothing left of it while
	// the pod runs on.
	out, errOut, code, rm := cidRun(t, "--rm", "--pod", pod, busybox, "sh", "-c", "wget -qO- http://127.0.0.1:8080/; exit 3")
	if code != 3 || out != "hello from web\n" {
		t.Errorf("podman run --rm --pod: exit %d, %q (stderr %s); want 3 and the page", code, out, errOut)
	}
	noneLeft(t, rm)
	if q := qemus(filepath.Join(podmanRoot, infra)); len(q) != 1 {
		t.Errorf("QEMU processes of the pod after run --rm: %v, want one", q)
	}

	// pod stop stops the VM with its containers; pod start boots a new
	// one for them all.
	if _, errOut, code := podman(t, "pod", "stop", "-t", "0", pod); code != 0 {
		t.Fatalf("podman pod stop: exit %d: %s", code, errOut)
	}
	for _, id := range ids {
		noneLeft(t, id)
	}
	if _, errOut, code := podman(t, "pod", "start", pod); code != 0 {
		t.Fatalf("podman pod start: exit %d: %s", code, errOut)
	}
	if q := qemus(filepath.Join(podmanRoot, infra)); len(q) != 1 {
		t.Errorf("QEMU processes of the pod after pod start: %v, want one", q)
	}
	deadline = time.Now().Add(time.Minute)
	for {
		out, errOut, code := podman(t, "exec", other, "wget", "-qO-", "http://127.0.0.1:8080/")
		if code == 0 && out == "hello from web\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after pod start, wget http://127.0.0.1:8080/: exit %d, %q: %s", code, out, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}

	if _, errOut, code := podman(t, "pod", "rm", "-f", "-t", "0", pod); code != 0 {
		t.Fatalf("podman pod rm -f: exit %d: %s", code, errOut)
	}
	for _, id := range ids {
		noneLeft(t, id)
	}
}
