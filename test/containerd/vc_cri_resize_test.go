package containerd_test

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// TestVCCRIResize: the kubelet's in-place resize is
// UpdateContainerResources, which containerd passes to the shim's task
// Update: the VM gets vCPUs and memory hotplugged and taken out again,
// with the container's cgroup, and no restart; a size the VM cannot take
// fails the call naming the limit, and changes nothing.
func TestVCCRIResize(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs a host with 2 CPUs: vCPUs stay within the host's")
	}
	d := startVC(t, "cpus = 1\nmemory_mib = 256\nmax_memory_mib = 1024")
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	pcfg := d.PodConfig("vc-resize", "vc-resize-uid")
	pod, err := cri.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: containerd.VCHandler})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	defer func() {
		cctx := context.WithoutCancel(ctx)
		cri.Runtime.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		cri.Runtime.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		d.waitNoShims(t)
	}()
	ctr, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  pod.PodSandboxId,
		Config:        containerd.ContainerConfig("busybox", images.BusyboxRef, "sleep", "1000"),
		SandboxConfig: pcfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	look := func() string {
		r := execSync(t, cri, ctr.ContainerId, "sh", "-c", "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo; cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max")
		if r.ExitCode != 0 {
			t.Fatalf("look inside: exit %d %q %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		return strings.TrimSpace(string(r.Stdout))
	}
	fields := func(s string) (nproc, memKiB int, cgroup string) {
		l := strings.SplitN(s, "\n", 3)
		nproc, _ = strconv.Atoi(l[0])
		memKiB, _ = strconv.Atoi(l[1])
		return nproc, memKiB, l[2]
	}
	boot := look()
	n, bootKiB, cg := fields(boot)
	if n != 1 || bootKiB > 256<<10 || cg != "max 100000\nmax" {
		t.Fatalf("at boot: %q, want 1 vCPU, at most 256 MiB, no limits", boot)
	}
	update := func(quota, mem int64) error {
		_, err := cri.Runtime.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
			ContainerId: ctr.ContainerId,
			Linux:       &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: quota, MemoryLimitInBytes: mem},
		})
		return err
	}
	begin := time.Now()
	if err := update(100000, 256<<20); err != nil {
		t.Fatalf("UpdateContainerResources up: %v", err)
	}
	up := time.Since(begin)
	n, kib, cg := fields(look())
	if n != 2 || kib < bootKiB+250<<10 || kib > bootKiB+256<<10 || cg != "100000 100000\n268435456" {
		t.Fatalf("after resizing up: %d vCPUs, MemTotal %d kB, cgroup %q; want 2 vCPUs, %d kB more, cpu.max 100000 100000, memory.max 256 MiB", n, kib, cg, 256<<10)
	}
	// -1: no limit (containerd keeps a limit given as 0).
	begin = time.Now()
	if err := update(-1, -1); err != nil {
		t.Fatalf("UpdateContainerResources down: %v", err)
	}
	down := time.Since(begin)
	// The harness runs TCG, where the vCPU stays (QEMU 7.2 cannot unplug
	// one): 2 vCPUs, the boot memory, no limits.
	after := "2" + strings.TrimPrefix(boot, "1")
	if got := look(); got != after {
		t.Fatalf("after resizing down: %q, want %q", got, after)
	}
	t.Logf("resize through containerd under TCG: up (1->2 vCPUs, +256 MiB) %s, down (-256 MiB) %s", up.Round(time.Millisecond), down.Round(time.Millisecond))

	err = update(100000, 2<<30)
	if err == nil || !strings.Contains(err.Error(), "hypervisor.max_memory_mib 1024") || !strings.Contains(err.Error(), "linux.resources.memory.limit") {
		t.Fatalf("UpdateContainerResources beyond max_memory_mib: %v, want an error naming the limit and hypervisor.max_memory_mib", err)
	}
	if got := look(); got != after {
		t.Fatalf("after a refused resize: %q, want %q", got, after)
	}
}
