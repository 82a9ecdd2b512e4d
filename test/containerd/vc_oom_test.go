package containerd_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// oomLoopRuns is how many containers TestVCCRIOOMLoop has OOM-killed, in
// waves of oomLoopWave started together.
const (
	oomLoopRuns = 20
	oomLoopWave = 4
)

// TestVCCRIOOMLoop: every container the guest's OOM killer kills is
// reported, not most of them: 20 containers of one pod run out of a
// 16 MiB limit (in waves of 4, so their events and exits interleave) in
// a 2-vCPU guest.
// For each, the shim sends TaskOOM before TaskExit, and CRI's
// ContainerStatus says exit 137 with reason OOMKilled as soon as it says
// the container exited (what the kubelet reads). A sibling without a
// limit stays up.
func TestVCCRIOOMLoop(t *testing.T) {
	// Two vCPUs: the agent's watcher runs while a hog is being killed,
	// the interleaving that lost events.
	d := startVC(t, "cpus = 2")
	cri := d.CRI(t)
	stop := d.events(t)
	start := time.Now()
	pcfg, podID, sibling := runPod(t, d.Containerd, cri, containerd.VCHandler, "vc-oomloop", "sleep", "1000")

	type result struct {
		id, name string
		exit     int32
		reason   string
		err      error
	}
	results := make([]result, oomLoopRuns)
	run := func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		r := &results[i]
		r.name = fmt.Sprintf("hog-%02d", i)
		cfg := containerd.ContainerConfig(r.name, images.BusyboxRef, "sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
		cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 << 20}
		c, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pcfg})
		if err != nil {
			r.err = fmt.Errorf("CreateContainer: %w", err)
			return
		}
		r.id = c.ContainerId
		if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.id}); err != nil {
			r.err = fmt.Errorf("StartContainer: %w", err)
			return
		}
		// The first status that says exited is the one that counts: the
		// kubelet reads it once it sees the container exit.
		for {
			cs, err := cri.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: r.id})
			if err != nil {
				r.err = fmt.Errorf("ContainerStatus: %w", err)
				return
			}
			if cs.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				r.exit, r.reason = cs.Status.ExitCode, cs.Status.Reason
				return
			}
			select {
			case <-ctx.Done():
				r.err = fmt.Errorf("still %v: %w", cs.Status.State, ctx.Err())
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for w := 0; w < oomLoopRuns; w += oomLoopWave {
		var wg sync.WaitGroup
		for i := w; i < w+oomLoopWave && i < oomLoopRuns; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); run(i) }()
		}
		wg.Wait()
	}
	took := time.Since(start)

	var wants []string
	for _, r := range results {
		if r.id != "" {
			wants = append(wants, `/tasks/exit {"container_id":"`+r.id+`"`)
		}
	}
	ev := stop(wants...)
	reported, oomKilled := 0, 0
	for _, r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.name, r.err)
			continue
		}
		if r.exit == 137 && r.reason == "OOMKilled" {
			oomKilled++
		} else {
			t.Errorf("%s (%.12s): exit %d, reason %q; want 137 and OOMKilled", r.name, r.id, r.exit, r.reason)
		}
		oom, exit := -1, -1
		for i, l := range ev {
			if oom < 0 && strings.HasPrefix(l, `/tasks/oom {"container_id":"`+r.id+`"`) {
				oom = i
			}
			if exit < 0 && strings.HasPrefix(l, `/tasks/exit {"container_id":"`+r.id+`"`) {
				exit = i
			}
		}
		if oom >= 0 && exit >= 0 && oom < exit {
			reported++
		} else {
			t.Errorf("%s (%.12s): TaskOOM at %d, TaskExit at %d among the events; want TaskOOM first", r.name, r.id, oom, exit)
		}
	}
	t.Logf("%d OOM-killed containers in %v: %d with TaskOOM before TaskExit, %d with reason OOMKilled at their first exited status",
		oomLoopRuns, took.Round(time.Millisecond), reported, oomKilled)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if cs, err := cri.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: sibling}); err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("sibling without a limit after the OOM kills: %v, %v", cs.GetStatus().GetState(), err)
	}
	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	d.waitNoShims(t)
}
