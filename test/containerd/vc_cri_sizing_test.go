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

// TestVCCRIPodSizing: the kubelet passes a pod's limits (one CPU, 192 MiB)
// in PodSandboxConfig.Linux.Resources; the VM grows by them beyond the
// configured 1 vCPU and 256 MiB, so the limits fit.
func TestVCCRIPodSizing(t *testing.T) {
	d := startVC(t, "")
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	pcfg := d.PodConfig("vc-sized", "vc-sized-uid")
	pcfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuPeriod: 100000, CpuQuota: 100000, MemoryLimitInBytes: 192 << 20}
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

	wantCPUs := min(2, runtime.NumCPU())
	r := execSync(t, cri, ctr.ContainerId, "nproc")
	if got, _ := strconv.Atoi(strings.TrimSpace(string(r.Stdout))); got != wantCPUs {
		t.Errorf("nproc in the pod: %q (stderr %q), want %d (1 configured + 1 for the pod's limit, at most the host's CPUs)", r.Stdout, r.Stderr, wantCPUs)
	}
	// 256 + 192 MiB: the guest's MemTotal (less what the kernel keeps)
	// is beyond the whole of an unsized 256 MiB VM.
	r = execSync(t, cri, ctr.ContainerId, "sed", "-n", "s/^MemTotal: *\\([0-9]*\\) kB/\\1/p", "/proc/meminfo")
	if kib, _ := strconv.Atoi(strings.TrimSpace(string(r.Stdout))); kib <= 256*1024 || kib > 448*1024 {
		t.Errorf("guest MemTotal %q kB (stderr %q): want above 256 MiB and at most 448 MiB", r.Stdout, r.Stderr)
	}
}
