// The vc shim under containerd's CRI plugin: pods as the kubelet drives
// them.
package containerd_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// privatePid asks for a container pid namespace of its own.
func privatePid(c *runtimeapi.ContainerConfig) *runtimeapi.ContainerConfig {
	c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
	}
	return c
}

// memKiB is a process's memory figure from /proc/<pid>/status (VmRSS:,
// RssAnon:...).
func memKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no %s for pid %d", field, pid)
	return 0
}

// TestVCCRIPod is the kubelet's pod lifecycle with RuntimeClass handler
// vc: the pod sandbox boots one VM, run by one shim; two containers run in
// it (same guest kernel, same boot id), exec, stats and logs work; stop
// and remove leave nothing.
func TestVCCRIPod(t *testing.T) {
	d := startVC(t, "")
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	pcfg, podID, c1 := runPod(t, d.Containerd, cri, containerd.VCHandler, "vc-pod", "sh", "-c", "echo started; exec sleep 1000")
	// A volume, as a configmap is: a host directory bound read-only.
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "key"), []byte("value-from-the-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	c2cfg := privatePid(containerd.ContainerConfig("second", images.BusyboxRef, "sleep", "1000"))
	c2cfg.Mounts = []*runtimeapi.Mount{{HostPath: vol, ContainerPath: "/etc/config", Readonly: true}}
	c2resp, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  podID,
		Config:        c2cfg,
		SandboxConfig: pcfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer (second): %v", err)
	}
	c2 := c2resp.ContainerId
	if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c2}); err != nil {
		t.Fatalf("StartContainer (second): %v", err)
	}

	st, err := cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || st.Status.RuntimeHandler != containerd.VCHandler {
		t.Fatalf("pod status: %v, %v", st, err)
	}
	// The VM joined the pod's network namespace (CNI's bridge network):
	// the pod's address is on the guest's eth0 and the gateway answers.
	ip := net.ParseIP(st.GetStatus().GetNetwork().GetIp())
	_, subnet, _ := net.ParseCIDR(containerd.CNISubnet)
	if ip == nil || !subnet.Contains(ip) {
		t.Errorf("pod IP %q, want one in %s", st.GetStatus().GetNetwork().GetIp(), containerd.CNISubnet)
	} else {
		if r := execSync(t, cri, c1, "ip", "-4", "addr", "show", "eth0"); !strings.Contains(string(r.Stdout), ip.String()+"/24") {
			t.Errorf("eth0 in the guest lacks %s/24:\n%s%s", ip, r.Stdout, r.Stderr)
		}
		if r := execSync(t, cri, c2, "ping", "-c", "1", "-W", "5", containerd.CNIGateway); r.ExitCode != 0 {
			t.Errorf("ping the bridge gateway %s from the pod: exit %d\n%s%s", containerd.CNIGateway, r.ExitCode, r.Stdout, r.Stderr)
		}
	}

	// One shim and one VM for the pod: its containers joined the
	// sandbox's shim.
	shims, vms := d.shimPids(), qemuPids(d.stateRoot)
	if len(shims) != 1 || len(vms) != 1 {
		t.Fatalf("shims %v and VMs %v for one pod; want one each", shims, vms)
	}

	r := execSync(t, cri, c1, "uname", "-r")
	if got := strings.TrimSpace(string(r.Stdout)); r.ExitCode != 0 || got != d.setup.kernelVersion || got == hostKernel(t) {
		t.Errorf("exec uname -r: %q (exit %d, stderr %q), want the guest kernel %q", got, r.ExitCode, r.Stderr, d.setup.kernelVersion)
	}
	boot1 := strings.TrimSpace(string(execSync(t, cri, c1, "cat", "/proc/sys/kernel/random/boot_id").Stdout))
	boot2 := strings.TrimSpace(string(execSync(t, cri, c2, "cat", "/proc/sys/kernel/random/boot_id").Stdout))
	hostBoot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if boot1 == "" || boot1 != boot2 || boot1 == strings.TrimSpace(string(hostBoot)) {
		t.Errorf("boot ids: %q and %q (host %q): want the same guest boot", boot1, boot2, strings.TrimSpace(string(hostBoot)))
	}
	if r := execSync(t, cri, c2, "sh", "-c", "echo oops >&2; exit 7"); r.ExitCode != 7 || strings.TrimSpace(string(r.Stderr)) != "oops" {
		t.Errorf("exec `exit 7`: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	if r := execSync(t, cri, c1, "hostname"); strings.TrimSpace(string(r.Stdout)) != pcfg.Hostname {
		t.Errorf("hostname %q, want %q", r.Stdout, pcfg.Hostname)
	}
	// CRI's files (bind mounts of host files) and the volume reach the
	// guest.
	if r := execSync(t, cri, c1, "cat", "/etc/hostname"); strings.TrimSpace(string(r.Stdout)) != pcfg.Hostname {
		t.Errorf("/etc/hostname %q, want %q", r.Stdout, pcfg.Hostname)
	}
	if r := execSync(t, cri, c2, "cat", "/etc/config/key"); string(r.Stdout) != "value-from-the-host" {
		t.Errorf("volume file: %q (stderr %q)", r.Stdout, r.Stderr)
	}
	if r := execSync(t, cri, c2, "sh", "-c", "echo x > /etc/config/new"); r.ExitCode == 0 {
		t.Errorf("wrote to a read-only volume")
	}
	// The first container shares the pod's pid namespace (CRI's default,
	// NamespaceMode POD): it sees the pod's pause process. The second asked
	// for its own (CONTAINER): its sleep is pid 1.
	if r := execSync(t, cri, c1, "ps", "-o", "pid,args"); !strings.Contains(string(r.Stdout), "/pause") || !regexpMatch(`(?m)^\s*1\s+.*pause`, string(r.Stdout)) {
		t.Errorf("processes in the first container (pod pid namespace):\n%s", r.Stdout)
	}
	if r := execSync(t, cri, c2, "ps", "-o", "pid,args"); strings.Contains(string(r.Stdout), "pause") || !regexpMatch(`(?m)^\s*1\s+sleep 1000`, string(r.Stdout)) {
		t.Errorf("processes in the second container (its own pid namespace):\n%s", r.Stdout)
	}

	for _, id := range []string{c1, c2} {
		stats, err := cri.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("ContainerStats: %v", err)
		}
		s := stats.Stats
		if s.GetAttributes().GetId() != id || s.GetMemory().GetWorkingSetBytes().GetValue() == 0 || s.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 {
			t.Errorf("ContainerStats %s: %v", id, s)
		}
	}

	logPath := filepath.Join(pcfg.LogDirectory, "busybox.log")
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), " stdout F started") {
		t.Errorf("container log %s: %q, %v", logPath, b, err)
	}

	// The target is 15 MB (Kata's shim: about 18). Most of it is the
	// binary's pages, shared by every shim on the host; what each pod
	// costs on its own is the anonymous part. The OpenTelemetry SDK and
	// exporter linked in (stop 25) made the binary's share 2.6 MB larger
	// with tracing off (docs/performance.md): the bound on the whole RSS
	// is 21 MiB until that is taken back; the anonymous part keeps its 8.
	rss, anon := memKiB(t, shims[0], "VmRSS:"), memKiB(t, shims[0], "RssAnon:")
	t.Logf("shim memory with a pod of two containers: RSS %d KiB, of which anonymous %d KiB", rss, anon)
	if rss > 21*1024 || anon > 8*1024 {
		t.Errorf("shim RSS %d KiB (anonymous %d KiB): more than 21 MiB (8 MiB)", rss, anon)
	}

	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	for _, id := range []string{c1, c2} {
		cs, err := cri.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			t.Errorf("container %s after StopPodSandbox: %v, %v", id, cs.GetStatus().GetState(), err)
		}
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	d.waitNoShims(t)
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after RemovePodSandbox: %s", left)
	}
	if m := mountsUnder(d.State); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
}

// TestVCCRIRestart: containerd restarts while a vc pod runs; the shim and
// the VM keep running, containerd reconnects to the shim, and the pod
// answers exec and is torn down through the new daemon.
func TestVCCRIRestart(t *testing.T) {
	d := startVC(t, "")
	cri := d.CRI(t)
	_, podID, ctrID := runPod(t, d.Containerd, cri, containerd.VCHandler, "vc-restart", "sleep", "1000")
	shims, vms := d.shimPids(), qemuPids(d.stateRoot)
	before := d.Pid()

	d.Restart(t)
	if after := d.Pid(); after == 0 || after == before {
		t.Fatalf("daemon pid %d -> %d: not restarted", before, after)
	}
	if s, v := d.shimPids(), qemuPids(d.stateRoot); fmt.Sprint(s, v) != fmt.Sprint(shims, vms) {
		t.Fatalf("shims %v and VMs %v after the restart, were %v and %v", s, v, shims, vms)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cri = d.CRI(t)
	podStillRunning(ctx, t, cri, podID, ctrID)
	if r := execSync(t, cri, ctrID, "uname", "-r"); strings.TrimSpace(string(r.Stdout)) != d.setup.kernelVersion {
		t.Errorf("exec after restart: %q", r.Stdout)
	}
	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	d.waitNoShims(t)
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after RemovePodSandbox: %s", left)
	}
}
