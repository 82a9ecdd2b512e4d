package vc

import (
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/persist"
)

func limited(cpus float64, mib int64) *specs.Spec {
	period, quota, mem := uint64(100000), int64(cpus*100000), mib<<20
	r := &specs.LinuxResources{}
	if cpus > 0 {
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if mib > 0 {
		r.Memory = &specs.LinuxMemory{Limit: &mem}
	}
	return &specs.Spec{Linux: &specs.Linux{Resources: r}}
}

// The VM is the guest's own share plus the workload's limits, and the
// part of the workload that is whole memory steps is removable.
func TestAddWorkloadBounds(t *testing.T) {
	h := HypervisorConfig{CPUs: 1, MemoryMiB: 256}
	h.AddWorkload(1, 192)
	if h.CPUs != min(2, uint32(runtime.NumCPU())) || h.MemoryMiB != 448 {
		t.Fatalf("sized %d vCPUs %d MiB", h.CPUs, h.MemoryMiB)
	}
	if w := h.Workload; w == nil || *w != (Workload{BaseCPUs: 1, BaseMemoryMiB: 256, CPUs: 1, MemoryMiB: 192}) {
		t.Fatalf("workload %+v", h.Workload)
	}
	var hc hypervisor.Config
	h.setResizeBounds(&hc)
	if hc.FixedCPUs != 1 || hc.FixedMemoryMiB != 320 || hc.MaxCPUs != uint32(min(runtime.NumCPU(), hypervisor.MaxVCPUs)) {
		t.Fatalf("bounds %+v", hc)
	}
	if host := hostMemoryMiB(); hc.MaxMemoryMiB < 448 || uint32(hc.MaxMemoryMiB) > host {
		t.Fatalf("max memory %d MiB (host %d)", hc.MaxMemoryMiB, host)
	}
	// A size a person chose is the guest's own: nothing held for the
	// workload in that dimension.
	cpus := uint32(1)
	h.SetSize(&cpus, nil)
	if h.CPUs != 1 || h.Workload.BaseCPUs != 1 || h.Workload.CPUs != 0 || h.Workload.MemoryMiB != 192 {
		t.Fatalf("after SetSize: %d vCPUs, workload %+v", h.CPUs, h.Workload)
	}
	// vCPUs stay within max_cpus.
	h = HypervisorConfig{CPUs: 1, MaxCPUs: 1}
	h.AddWorkload(3, 0)
	if h.CPUs != 1 || h.MemoryMiB != 0 || h.Workload.CPUs != 3 {
		t.Fatalf("within max_cpus 1: %d vCPUs, %d MiB, workload %+v", h.CPUs, h.MemoryMiB, h.Workload)
	}
	// Without a workload the whole VM is fixed.
	h = HypervisorConfig{CPUs: 1, MemoryMiB: 300, MaxCPUs: 1, MaxMemoryMiB: 812}
	h.setResizeBounds(&hc)
	if hc.FixedCPUs != 1 || hc.MaxCPUs != 1 || hc.FixedMemoryMiB != 300 || hc.MaxMemoryMiB != 812 {
		t.Fatalf("bounds %+v", hc)
	}
}

func TestValidateMax(t *testing.T) {
	for name, tc := range map[string]struct {
		h     HypervisorConfig
		field string
	}{
		"cpus above max":    {HypervisorConfig{CPUs: 1, MaxCPUs: hypervisor.MaxVCPUs + 1}, "hypervisor.max_cpus"},
		"cpus below vm":     {HypervisorConfig{CPUs: 2, MaxCPUs: 1}, "hypervisor.max_cpus 1: below"},
		"memory above host": {HypervisorConfig{CPUs: 1, MemoryMiB: 256, MaxMemoryMiB: hostMemoryMiB() + 1}, "hypervisor.max_memory_mib"},
		"memory below vm":   {HypervisorConfig{CPUs: 1, MemoryMiB: 512, MaxMemoryMiB: 256}, "hypervisor.max_memory_mib 256: below"},
	} {
		err := tc.h.validateMax()
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming %s", name, err, tc.field)
		}
	}
	// Set explicitly, the maximum may exceed the host's CPUs (TCG runs
	// more vCPUs than CPUs); the default stays at the host's.
	h := HypervisorConfig{CPUs: 1, MaxCPUs: uint32(runtime.NumCPU() + 2)}
	if err := h.validateMax(); err != nil {
		t.Errorf("max_cpus above the host's CPUs: %v", err)
	}
	if got := h.maxCPUs(); got != uint32(runtime.NumCPU()+2) {
		t.Errorf("maxCPUs %d, want the configured %d", got, runtime.NumCPU()+2)
	}
	if got := (&HypervisorConfig{CPUs: 1}).maxCPUs(); got != uint32(min(runtime.NumCPU(), hypervisor.MaxVCPUs)) {
		t.Errorf("default maxCPUs %d, want the host's %d", got, runtime.NumCPU())
	}
}

// The target is the guest's share, what is still held for the pod, and
// the limits of the containers not stopped; memory in whole steps above
// the fixed part, vCPUs within the max.
func TestResizeTarget(t *testing.T) {
	store, err := persist.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create("sb"); err != nil {
		t.Fatal(err)
	}
	h := HypervisorConfig{CPUs: 1, MemoryMiB: 256, MaxCPUs: uint32(min(runtime.NumCPU(), 2))}
	h.AddWorkload(1, 100) // a pod of one container: 1 CPU, 100 MiB
	s := &Sandbox{id: "sb", store: store}
	s.status.Config.Hypervisor = h
	s.status.Reserved = Reservation{CPUs: 1, MemoryMiB: 100}
	save := func(id string, state State, spec *specs.Spec) *ContainerStatus {
		c := &ContainerStatus{ID: id, State: state, Config: ContainerConfig{ID: id, Spec: spec}}
		if err := store.Save("sb", containerKey(id), c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	want := func(next *ContainerStatus, cpus, mib uint32) {
		t.Helper()
		got, err := s.resizeTarget(next)
		if err != nil {
			t.Fatal(err)
		}
		if got != (hypervisor.Size{CPUs: cpus, MemoryMiB: mib}) {
			t.Fatalf("target %+v, want %d vCPUs %d MiB", got, cpus, mib)
		}
	}
	maxCPUs := h.maxCPUs()
	// The pause container has no limits: the VM is its boot size.
	pause := save("pause", StateRunning, &specs.Spec{})
	want(pause, min(2, maxCPUs), 356)
	// The app container takes up the reservation as it joins.
	s.status.Reserved = Reservation{}
	app := save("app", StateRunning, limited(1, 100))
	want(app, min(2, maxCPUs), 356)
	// Its limits grow: memory in 128 MiB steps above the fixed 356 MiB
	// (256 + the 100 MiB that are not a whole step); vCPUs within max.
	app.Config.Spec = limited(2, 612)
	want(app, min(3, maxCPUs), 356+512)
	app.Config.Spec = limited(0.5, 50)
	want(app, min(2, maxCPUs), 356)
	// A stopped container counts no more.
	save("old", StateStopped, limited(4, 4096))
	want(app, min(2, maxCPUs), 356)
	// No CPU limit (a quota without a period) adds no vCPU.
	quota, period := int64(1), uint64(0)
	app.Config.Spec = limited(0, 0)
	app.Config.Spec.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	want(app, 1, 356)
}

// An update's resources go over the recorded ones field by field, and
// the undo puts back "no limit" where there was none.
func TestMergeResources(t *testing.T) {
	old := limited(1, 0).Linux.Resources
	shares := uint64(512)
	old.CPU.Shares = &shares
	r := limited(0, 512).Linux.Resources
	quota := int64(200000)
	r.CPU = &specs.LinuxCPU{Quota: &quota}
	m, err := mergeResources(old, r)
	if err != nil {
		t.Fatal(err)
	}
	if *m.CPU.Quota != 200000 || *m.CPU.Period != 100000 || *m.CPU.Shares != 512 || *m.Memory.Limit != 512<<20 {
		t.Fatalf("merged %+v %+v", m.CPU, m.Memory)
	}
	if *old.CPU.Quota != 100000 || old.Memory != nil {
		t.Fatal("merge changed the old resources")
	}
	u := restoreResources(old, r)
	if *u.CPU.Quota != 100000 || *u.Memory.Limit != -1 {
		t.Fatalf("restore %+v %+v", u.CPU, u.Memory)
	}
}
