package vc

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func resources(period uint64, quota, mem int64) *specs.Spec {
	r := &specs.LinuxResources{}
	if period != 0 || quota != 0 {
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if mem != 0 {
		r.Memory = &specs.LinuxMemory{Limit: &mem}
	}
	return &specs.Spec{Linux: &specs.Linux{Resources: r}}
}

func podSpec(period, quota, mem string) *specs.Spec {
	return &specs.Spec{Annotations: map[string]string{CRIContainerType: "sandbox",
		CRISandboxCPUPeriod: period, CRISandboxCPUQuota: quota, CRISandboxMemory: mem}}
}

func TestWorkloadFromSpec(t *testing.T) {
	// A pod sandbox's own resources are not the pod's: its annotations are.
	podWithResources := podSpec("100000", "250000", "")
	podWithResources.Linux = resources(100000, 50000, 64<<20).Linux
	// CRI annotations on a container that is not a pod sandbox: its own.
	member := resources(100000, 50000, 64<<20)
	member.Annotations = map[string]string{CRIContainerType: "container", CRISandboxMemory: "1073741824"}
	for _, c := range []struct {
		name      string
		spec      *specs.Spec
		cpus, mib uint32
		errHas    string // the field an error names
	}{
		{name: "no spec", spec: nil},
		{name: "no limits", spec: &specs.Spec{}},
		{name: "no resources", spec: &specs.Spec{Linux: &specs.Linux{}}},
		{name: "shares only", spec: &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: new(uint64(1024))}}}}},
		{name: "unlimited", spec: resources(100000, -1, -1)},
		{name: "quota/period: two CPUs", spec: resources(50000, 100000, 0), cpus: 2},
		{name: "fractional CPUs round up: 1.5", spec: resources(100000, 150000, 0), cpus: 2},
		{name: "fractional CPUs round up: 0.01", spec: resources(100000, 1000, 0), cpus: 1},
		{name: "quota without period", spec: resources(0, 200000, 0)},
		{name: "memory rounds up to a MiB", spec: resources(0, 0, 100<<20+1), mib: 101},
		{name: "memory at a VM's maximum", spec: resources(0, 0, hypervisor.MaxVMMemoryMiB<<20), mib: hypervisor.MaxVMMemoryMiB},
		{name: "memory above a VM's maximum", spec: resources(0, 0, hypervisor.MaxVMMemoryMiB<<20+1), errHas: "linux.resources.memory.limit"},
		{name: "absurd memory", spec: resources(0, 0, 1<<62), errHas: "linux.resources.memory.limit"},
		{name: "absurd CPUs", spec: resources(1, 1<<62, 0), errHas: "linux.resources.cpu.quota"},
		{name: "pod: 1.5 CPUs, 100 MiB + 1 byte", spec: podSpec("100000", "150000", "104857601"), cpus: 2, mib: 101},
		{name: "pod: unlimited", spec: podSpec("100000", "-1", "0")},
		{name: "pod: no annotations", spec: &specs.Spec{Annotations: map[string]string{CRIContainerType: "sandbox"}}},
		{name: "pod: annotations, not its resources", spec: podWithResources, cpus: 3},
		{name: "pod member: its own resources", spec: member, cpus: 1, mib: 64},
		{name: "pod: quota not a number", spec: podSpec("100000", "1.5", ""), errHas: "annotation " + CRISandboxCPUQuota},
		{name: "pod: memory not a number", spec: podSpec("", "", "1Gi"), errHas: "annotation " + CRISandboxMemory},
		{name: "pod: period not a number", spec: podSpec("x", "", ""), errHas: "annotation " + CRISandboxCPUPeriod},
		{name: "pod: memory above a VM's maximum", spec: podSpec("", "", strconv.FormatInt(2<<40, 10)), errHas: "annotation " + CRISandboxMemory},
	} {
		cpus, mib, err := WorkloadFromSpec(c.spec)
		if c.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), c.errHas) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s: %d CPUs, %d MiB, %v; want an invalid argument naming %s", c.name, cpus, mib, err, c.errHas)
			}
			continue
		}
		if err != nil || cpus != c.cpus || mib != c.mib {
			t.Errorf("%s: %d CPUs, %d MiB, %v; want %d, %d", c.name, cpus, mib, err, c.cpus, c.mib)
		}
	}
}

// SizeFor puts the workload on top of the guest's own share, vCPUs
// within the bound (MaxCPUs, else the host's).
func TestSizeFor(t *testing.T) {
	host := uint32(runtime.NumCPU())
	for _, c := range []struct {
		name      string
		base      HypervisorConfig
		spec      *specs.Spec
		cpus, mib uint32
	}{
		{"no limits", HypervisorConfig{CPUs: 1, MemoryMiB: 256}, &specs.Spec{}, 1, 256},
		{"no limits, defaults stay zero", HypervisorConfig{}, &specs.Spec{}, hypervisor.DefaultCPUs, 0},
		{"pod: one CPU, 128 MiB", HypervisorConfig{CPUs: 1, MemoryMiB: 256}, podSpec("100000", "100000", "134217728"), min(2, max(1, host)), 384},
		{"pod: more CPUs than the host", HypervisorConfig{CPUs: 1, MemoryMiB: 256}, podSpec("100000", "6400000", "0"), max(1, host), 256},
		{"pod: within max_cpus", HypervisorConfig{CPUs: 1, MemoryMiB: 256, MaxCPUs: 1}, podSpec("100000", "300000", "0"), 1, 256},
		{"pod: base above the host", HypervisorConfig{CPUs: host + 2, MemoryMiB: 256}, podSpec("100000", "100000", ""), host + 2, 256},
		{"pod: defaults", HypervisorConfig{}, podSpec("", "", "1048576"), 1, hypervisor.DefaultMemoryMiB + 1},
		{"container: 1.5 CPUs, 300 MiB", HypervisorConfig{}, resources(100000, 150000, 300<<20), max(hypervisor.DefaultCPUs, min(hypervisor.DefaultCPUs+2, host)), hypervisor.DefaultMemoryMiB + 300},
		{"container: 64 MiB", HypervisorConfig{CPUs: 1, MemoryMiB: 256}, resources(0, 0, 64<<20), 1, 320},
	} {
		hc := c.base
		if err := hc.SizeFor(c.spec); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if hc.CPUs != c.cpus || hc.MemoryMiB != c.mib {
			t.Errorf("%s: %d CPUs, %d MiB; want %d, %d", c.name, hc.CPUs, hc.MemoryMiB, c.cpus, c.mib)
		}
	}
	hc := HypervisorConfig{CPUs: 1, MemoryMiB: 256}
	if err := hc.SizeFor(podSpec("100000", "x", "")); err == nil || !strings.Contains(err.Error(), CRISandboxCPUQuota) {
		t.Errorf("bad quota: %v, want an error naming %s", err, CRISandboxCPUQuota)
	}
	if hc.CPUs != 1 || hc.MemoryMiB != 256 || hc.Workload != nil {
		t.Errorf("a refused spec changed the size: %+v", hc)
	}
}

// The VM's whole size is validated once more by CreateSandbox: below the
// minimum, or the guest's share and a workload within a VM's maximum each
// but not together, is an error naming hypervisor.memory_mib.
func TestSizeValidate(t *testing.T) {
	dir := t.TempDir()
	k, i := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	os.WriteFile(k, nil, 0o644)
	os.WriteFile(i, nil, 0o644)
	good := SandboxConfig{ID: "sb", Hypervisor: HypervisorConfig{Kernel: k, Initrd: i, MaxCPUs: 1}}
	c := good
	if err := c.Hypervisor.SizeFor(resources(100000, 50000, 64<<20)); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil || c.Hypervisor.MemoryMiB != hypervisor.DefaultMemoryMiB+64 {
		t.Errorf("a container's 64 MiB: %d MiB, %v", c.Hypervisor.MemoryMiB, err)
	}
	c = good
	c.Hypervisor.MemoryMiB = hypervisor.MinMemoryMiB - 1
	if err := c.validate(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "hypervisor.memory_mib 127: below the minimum") {
		t.Errorf("below the minimum: %v", err)
	}
	c = good
	if err := c.Hypervisor.SizeFor(resources(0, 0, hypervisor.MaxVMMemoryMiB<<20)); err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "hypervisor.memory_mib") {
		t.Errorf("the guest's share and a VM's maximum: %v", err)
	}
}

// FuzzWorkloadFromSpec reads the CRI pod sizing annotations: a refused
// value is an invalid argument naming its annotation; an accepted one is
// rounded up, never down: cpus*period covers the quota, less a CPU does
// not, and likewise the MiB of memory, never more than a VM's maximum.
func FuzzWorkloadFromSpec(f *testing.F) {
	f.Add("100000", "150000", "104857601")
	f.Add("100000", "-1", "0")
	f.Add("", "200000", "")
	f.Add("50000", "100000", "268435456")
	f.Add("100000", "1.5", "1Gi")
	f.Add("1", "9223372036854775807", "9223372036854775807")
	f.Fuzz(func(t *testing.T, period, quota, mem string) {
		spec := podSpec(period, quota, mem)
		cpus, mib, err := WorkloadFromSpec(spec)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "annotation io.kubernetes.cri.sandbox-") {
				t.Fatalf("%v: error %v: not an invalid argument naming an annotation", spec.Annotations, err)
			}
			return
		}
		p, _ := strconv.ParseInt(period, 10, 64)
		q, _ := strconv.ParseInt(quota, 10, 64)
		m, _ := strconv.ParseInt(mem, 10, 64)
		if p > 0 && q > 0 {
			// In uint64: cpus*p may pass int64's range.
			if c := uint64(cpus); c*uint64(p) < uint64(q) || (c-1)*uint64(p) >= uint64(q) {
				t.Errorf("%v: %d CPUs for quota %d over period %d", spec.Annotations, cpus, q, p)
			}
		} else if cpus != 0 {
			t.Errorf("%v: %d CPUs without a limit", spec.Annotations, cpus)
		}
		if m > 0 {
			if b := uint64(mib) << 20; b < uint64(m) || b-1<<20 >= uint64(m) || mib > hypervisor.MaxVMMemoryMiB {
				t.Errorf("%v: %d MiB for %d bytes", spec.Annotations, mib, m)
			}
		} else if mib != 0 {
			t.Errorf("%v: %d MiB without a limit", spec.Annotations, mib)
		}
	})
}
