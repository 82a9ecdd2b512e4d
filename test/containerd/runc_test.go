// Package containerd_test runs containerd 2.x (hack/install-containerd.sh)
// with its runc runtime and, in the vc files, with containerd-shim-vc-v2:
// ctr and CRI (the kubelet's API) end to end, no registry involved.
// These runc tests prove the harness; the vc tests are their twins.
package containerd_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

func hostKernel(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRuncCtrRun: `ctr run --runtime io.containerd.runc.v2` on the
// imported busybox image prints the host's kernel, and ctr passes the
// container's exit status through.
func TestRuncCtrRun(t *testing.T) {
	c := containerd.StartContainerd(t, containerd.Options{})
	c.ImportImages(t)

	// The imported image is the one the images package wrote.
	img, err := images.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.ManifestDescriptor()
	if err != nil {
		t.Fatal(err)
	}
	ls := c.Ctr(t, "images", "list")
	if !strings.Contains(ls, images.BusyboxRef) || !strings.Contains(ls, want.Digest.String()) {
		t.Fatalf("ctr images list lacks %s at %s:\n%s", images.BusyboxRef, want.Digest, ls)
	}

	// Under load, ctr run with runc has once printed nothing for a task
	// that exits at once (seen once in make test, never alone): a race in
	// containerd's own stack, not the harness. An empty output is tried
	// again, twice at most, and logged.
	var out string
	for i := range 3 {
		out = c.Ctr(t, "run", "--rm", "--runtime", containerd.RuncRuntime, images.BusyboxRef, fmt.Sprintf("t1-%d", i), "uname", "-r")
		if strings.TrimSpace(out) != "" {
			break
		}
		t.Logf("ctr run (runc) of uname -r printed nothing, attempt %d", i+1)
	}
	if got, want := strings.TrimSpace(out), hostKernel(t); got != want {
		t.Errorf("uname -r in a runc container = %q, want the host's %q", got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := c.CtrCommand(ctx, "run", "--rm", "--runtime", containerd.RuncRuntime, images.BusyboxRef, "t2", "sh", "-c", "exit 3")
	err = cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("ctr run of `exit 3`: exit code %d (%v), want 3", code, err)
	}
	if left := c.Ctr(t, "containers", "list", "-q"); strings.TrimSpace(left) != "" {
		t.Errorf("--rm left containers: %q", left)
	}
}

// runPod runs a pod sandbox with handler and a busybox container in it,
// started; it returns the pod and container ids.
func runPod(t *testing.T, c *containerd.Containerd, cri *containerd.CRIClient, handler, name string, args ...string) (*runtimeapi.PodSandboxConfig, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pcfg := c.PodConfig(name, name+"-uid")
	pod, err := cri.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox (handler %s): %v", handler, err)
	}
	ctr, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  pod.PodSandboxId,
		Config:        containerd.ContainerConfig("busybox", images.BusyboxRef, args...),
		SandboxConfig: pcfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	return pcfg, pod.PodSandboxId, ctr.ContainerId
}

func execSync(t *testing.T, cri *containerd.CRIClient, id string, cmd ...string) *runtimeapi.ExecSyncResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := cri.Runtime.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 20})
	if err != nil {
		t.Fatalf("ExecSync %q: %v", cmd, err)
	}
	return r
}

// TestRuncCRIPod is the kubelet's pod lifecycle through CRI with the runc
// handler: a pod on the CNI bridge network with a busybox container, exec,
// stats, logs, stop, remove.
func TestRuncCRIPod(t *testing.T) {
	c := containerd.StartContainerd(t, containerd.Options{})
	c.ImportImages(t)
	cri := c.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	pcfg, podID, ctrID := runPod(t, c, cri, containerd.RuncHandler, "runc-pod", "sh", "-c", "echo started; exec sleep 1000")

	// The pod is ready, on the CNI network, with an address from its subnet.
	st, err := cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod state %v, want ready", st.Status.State)
	}
	if h := st.Status.RuntimeHandler; h != containerd.RuncHandler {
		t.Errorf("pod runtime handler %q", h)
	}
	ip := net.ParseIP(st.GetStatus().GetNetwork().GetIp())
	_, subnet, _ := net.ParseCIDR(containerd.CNISubnet)
	if ip == nil || !subnet.Contains(ip) {
		t.Fatalf("pod IP %q, want one in %s", st.GetStatus().GetNetwork().GetIp(), containerd.CNISubnet)
	}

	// Exec: the host's kernel (runc: no VM), exit codes, the pod's
	// hostname, its address on eth0, the bridge's gateway reachable.
	r := execSync(t, cri, ctrID, "uname", "-r")
	if got := strings.TrimSpace(string(r.Stdout)); r.ExitCode != 0 || got != hostKernel(t) {
		t.Errorf("exec uname -r: %q (exit %d, stderr %q), want %q", got, r.ExitCode, r.Stderr, hostKernel(t))
	}
	if r := execSync(t, cri, ctrID, "sh", "-c", "echo oops >&2; exit 7"); r.ExitCode != 7 || strings.TrimSpace(string(r.Stderr)) != "oops" {
		t.Errorf("exec `exit 7`: exit %d, stderr %q", r.ExitCode, r.Stderr)
	}
	if r := execSync(t, cri, ctrID, "hostname"); strings.TrimSpace(string(r.Stdout)) != pcfg.Hostname {
		t.Errorf("hostname %q, want %q", r.Stdout, pcfg.Hostname)
	}
	if r := execSync(t, cri, ctrID, "ip", "-4", "addr", "show", "eth0"); !strings.Contains(string(r.Stdout), ip.String()+"/24") {
		t.Errorf("eth0 in the pod lacks %s/24:\n%s%s", ip, r.Stdout, r.Stderr)
	}
	if r := execSync(t, cri, ctrID, "ping", "-c", "1", "-W", "5", containerd.CNIGateway); r.ExitCode != 0 {
		t.Errorf("ping the bridge gateway %s from the pod: exit %d\n%s%s", containerd.CNIGateway, r.ExitCode, r.Stdout, r.Stderr)
	}

	// Stats: the container's cgroup (v1 here) is read.
	stats, err := cri.Runtime.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatalf("ContainerStats: %v", err)
	}
	if s := stats.Stats; s.GetAttributes().GetId() != ctrID || s.GetMemory().GetWorkingSetBytes().GetValue() == 0 || s.GetCpu() == nil {
		t.Errorf("ContainerStats: %v", s)
	}

	// Logs: the container's stdout in CRI's log format.
	cs, err := cri.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container state %v", cs.Status.State)
	}
	logPath := filepath.Join(pcfg.LogDirectory, "busybox.log")
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), " stdout F started") {
		t.Errorf("container log %s: %q, %v", logPath, b, err)
	}

	// Stop and remove: the container is gone, the address released.
	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	st, err = cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Errorf("after StopPodSandbox: %v, %v", st.GetStatus().GetState(), err)
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	pods, err := cri.Runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("pods left after RemovePodSandbox: %v, %v", pods, err)
	}
	ctrs, err := cri.Runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(ctrs.Containers) != 0 {
		t.Errorf("containers left after RemovePodSandbox: %v, %v", ctrs, err)
	}
	if held := containerd.IPsHeldBy(podID); len(held) != 0 {
		t.Errorf("pod's addresses still reserved after removal: %v", held)
	}
}

// TestRuncCRIRestart: containerd restarts while a pod runs; the pod and
// its container survive and answer exec through the new daemon.
func TestRuncCRIRestart(t *testing.T) {
	c := containerd.StartContainerd(t, containerd.Options{})
	c.ImportImages(t)
	cri := c.CRI(t)
	_, podID, ctrID := runPod(t, c, cri, containerd.RuncHandler, "runc-restart", "sleep", "1000")
	before := c.Pid()

	c.Restart(t)
	if after := c.Pid(); after == 0 || after == before {
		t.Fatalf("daemon pid %d -> %d: not restarted", before, after)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cri = c.CRI(t)
	podStillRunning(ctx, t, cri, podID, ctrID)
	if r := execSync(t, cri, ctrID, "echo", "alive"); strings.TrimSpace(string(r.Stdout)) != "alive" {
		t.Errorf("exec after restart: %q", r.Stdout)
	}
	// Left running on purpose: Stop must tear the pod down.
}

// podStillRunning fails the test unless the pod is ready and its container
// running, as they were before containerd restarted.
func podStillRunning(ctx context.Context, t *testing.T, cri *containerd.CRIClient, podID, ctrID string) {
	t.Helper()
	st, err := cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil || st.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY {
		t.Fatalf("pod after restart: %v, %v", st.GetStatus().GetState(), err)
	}
	cs, err := cri.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container after restart: %v, %v", cs.GetStatus().GetState(), err)
	}
}
