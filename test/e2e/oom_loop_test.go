package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// TestOOMEventBeforeExit: 20 containers in turn run out of a 16 MiB limit
// in a 2-vCPU guest (the agent's watcher can then run while the hog is
// being killed). For every one, the agent has queued its OOM event by the
// time WaitContainer reports the exit: a GetOOMEvent after the wait
// answers at once with its id. The event used to be lost when the cgroup
// emptied before the kernel's (rate-limited) memory.events notification
// of the kill reached the watcher.
func TestOOMEventBeforeExit(t *testing.T) {
	const runs = 20
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	const id = "e2e-oomloop"
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: id, StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256, CPUs: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop(context.Background(), 5*time.Second)
		if err := s.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
		noLeftovers(t, id)
	})
	start := time.Now()
	reported := 0
	limit := int64(16 << 20)
	for i := range runs {
		cid := fmt.Sprintf("hog-%02d", i)
		spec := oci.DefaultSpec([]string{"sh", "-c", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done"}, nil, "/", false)
		spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: spec}); err != nil {
			t.Fatalf("create %s: %v", cid, err)
		}
		if err := s.Container(cid).Start(ctx); err != nil {
			t.Fatalf("start %s: %v", cid, err)
		}
		code, err := s.Container(cid).Wait(ctx)
		if err != nil || code != 137 {
			t.Fatalf("wait %s: %d, %v; want 137", cid, code, err)
		}
		octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := s.GetOOMEvent(octx)
		ocancel()
		if err != nil || got != cid {
			t.Errorf("%s: exit 137 reported, then GetOOMEvent: %q, %v; want %s at once", cid, got, err, cid)
		} else {
			reported++
		}
		if err := s.Container(cid).Delete(ctx); err != nil {
			t.Fatalf("delete %s: %v", cid, err)
		}
	}
	t.Logf("%d OOM-killed containers in %v: %d OOM events queued by the time the exit was reported", runs, time.Since(start).Round(time.Millisecond), reported)
}
