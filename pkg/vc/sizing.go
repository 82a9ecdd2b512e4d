package vc

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"strconv"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// Sizing: every front end (the shim, vc-runtime, vc) sizes a sandbox's VM
// the same way, from the OCI spec of the container that boots it
// (HypervisorConfig.SizeFor, WorkloadFromSpec): the configured size is the
// guest's own, and the workload's limits come on top (AddWorkload). A
// size a person chose (a flag, a configuration file, an annotation) is
// checked where it is parsed, naming the field (hypervisor.CheckCPUs,
// hypervisor.CheckMemoryMiB, CheckHostCPUs), and the VM's whole size once
// more by CreateSandbox (SandboxConfig validation). Sizes are uint32 vCPUs
// and MiB end to end: flags, configuration files, annotations (*uint32:
// set or not), SandboxConfig, hypervisor.Config and its Resizer.

// The CRI annotations that size a pod's VM: containerd's CRI plugin marks
// a pod's sandbox (pause) container with CRIContainerType "sandbox" and
// copies the kubelet's PodSandboxConfig.Linux.Resources (the sum of the
// pod's container limits) onto it.
const (
	CRIContainerType    = "io.kubernetes.cri.container-type"
	CRISandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	CRISandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	CRISandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// WorkloadFromSpec is what the workload of a VM booted for a container of
// this spec may use, in whole CPUs and MiB (rounded up; zero: no limit):
// a CRI pod's limits when spec is a pod sandbox's (CRIContainerType
// "sandbox"; the CRISandbox* annotations), else the container's own
// (linux.resources: CPU quota over period, the memory limit). An
// annotation that is not a whole number, or a limit more than a VM can
// have, is an error naming the annotation or the field, wrapping
// errdefs.ErrInvalidArgument.
func WorkloadFromSpec(spec *specs.Spec) (cpus, memoryMiB uint32, err error) {
	if spec == nil {
		return 0, 0, nil
	}
	if spec.Annotations[CRIContainerType] == "sandbox" {
		cpus, memoryMiB, err = podLimits(spec.Annotations)
	} else {
		cpus, memoryMiB, err = specLimits(spec)
	}
	if err != nil {
		return 0, 0, err
	}
	if memoryMiB > hypervisor.MaxVMMemoryMiB {
		field := "linux.resources.memory.limit"
		if spec.Annotations[CRIContainerType] == "sandbox" {
			field = "annotation " + CRISandboxMemory
		}
		return 0, 0, fmt.Errorf("%s: %d MiB: more than a VM's %d MiB: %w", field, memoryMiB, hypervisor.MaxVMMemoryMiB, errdefs.ErrInvalidArgument)
	}
	return cpus, memoryMiB, nil
}

// SizeFor grows the VM by what the workload of a container of this spec
// may use (WorkloadFromSpec, AddWorkload).
func (c *HypervisorConfig) SizeFor(spec *specs.Spec) error {
	cpus, mib, err := WorkloadFromSpec(spec)
	if err != nil {
		return err
	}
	c.AddWorkload(cpus, mib)
	return nil
}

// podLimits reads a pod's limits from the CRI sandbox annotations. A
// limit that is absent, zero or negative (unlimited) gives zero.
func podLimits(annotations map[string]string) (cpus, memoryMiB uint32, err error) {
	num := func(key string) (int64, error) {
		v, ok := annotations[key]
		if !ok || v == "" {
			return 0, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("annotation %s %q: not a whole number: %w", key, v, errdefs.ErrInvalidArgument)
		}
		return n, nil
	}
	period, err := num(CRISandboxCPUPeriod)
	if err != nil {
		return 0, 0, err
	}
	quota, err := num(CRISandboxCPUQuota)
	if err != nil {
		return 0, 0, err
	}
	mem, err := num(CRISandboxMemory)
	if err != nil {
		return 0, 0, err
	}
	return limits(period, quota, mem, "annotation "+CRISandboxCPUQuota, "annotation "+CRISandboxMemory)
}

// limits turns a CPU quota and period (microseconds) and a memory limit
// (bytes) into whole CPUs and MiB, rounding up; a limit that is zero or
// negative (unlimited) gives zero. The fields name the inputs in errors.
func limits(period, quota, mem int64, cpuField, memField string) (cpus, memoryMiB uint32, err error) {
	if period > 0 && quota > 0 {
		n := quota / period
		if quota%period != 0 {
			n++
		}
		if n > math.MaxUint32 {
			return 0, 0, fmt.Errorf("%s %d over period %d: too many CPUs: %w", cpuField, quota, period, errdefs.ErrInvalidArgument)
		}
		cpus = uint32(n)
	}
	if mem > 0 {
		n := mem >> 20
		if mem&(1<<20-1) != 0 {
			n++
		}
		if n > math.MaxUint32 {
			return 0, 0, fmt.Errorf("%s %d: too much memory: %w", memField, mem, errdefs.ErrInvalidArgument)
		}
		memoryMiB = uint32(n)
	}
	return cpus, memoryMiB, nil
}

// specLimits reads what a container may use from its spec's resources,
// as limits does: CPU quota over period, the memory limit; zero where
// there is no limit.
func specLimits(spec *specs.Spec) (cpus, memoryMiB uint32, err error) {
	if spec == nil || spec.Linux == nil || spec.Linux.Resources == nil {
		return 0, 0, nil
	}
	r := spec.Linux.Resources
	var period, quota, mem int64
	if r.CPU != nil && r.CPU.Period != nil && r.CPU.Quota != nil && *r.CPU.Period <= math.MaxInt64 {
		period, quota = int64(*r.CPU.Period), *r.CPU.Quota
	}
	if r.Memory != nil && r.Memory.Limit != nil {
		mem = *r.Memory.Limit
	}
	return limits(period, quota, mem, "linux.resources.cpu.quota", "linux.resources.memory.limit")
}

// AddWorkload grows the VM by what its workload may use, cpus CPUs and
// memoryMiB MiB (zero: no limit): the configured size (or the default) is
// the guest's own, for its kernel and agent, and the workload's limits
// come on top, as a pod's or a container's limits are expected to fit
// (workloadSize). It records both in Workload, for resizes.
func (c *HypervisorConfig) AddWorkload(cpus, memoryMiB uint32) {
	if c.Workload == nil {
		c.Workload = &Workload{BaseCPUs: cmp.Or(c.CPUs, hypervisor.DefaultCPUs), BaseMemoryMiB: cmp.Or(c.MemoryMiB, hypervisor.DefaultMemoryMiB)}
	}
	w := c.Workload
	w.CPUs = satAdd(w.CPUs, cpus)
	w.MemoryMiB = satAdd(w.MemoryMiB, memoryMiB)
	size := workloadSize(w.BaseCPUs, w.BaseMemoryMiB, w.CPUs, w.MemoryMiB, cmp.Or(c.MaxCPUs, uint32(runtime.NumCPU())))
	c.CPUs = size.CPUs
	if w.MemoryMiB > 0 {
		c.MemoryMiB = size.MemoryMiB
	}
}

// SetSize sets the VM's vCPUs or memory (nil: as it is) to a size a
// person chose: that is then the guest's own share, and the workload's
// limits in that dimension are no longer held for (containers' limits
// grow the VM beyond it, as a resize does).
func (c *HypervisorConfig) SetSize(cpus, memoryMiB *uint32) {
	w := c.Workload
	if cpus != nil {
		c.CPUs = *cpus
		if w != nil {
			w.BaseCPUs, w.CPUs = *cpus, 0
		}
	}
	if memoryMiB != nil {
		c.MemoryMiB = *memoryMiB
		if w != nil {
			w.BaseMemoryMiB, w.MemoryMiB = *memoryMiB, 0
		}
	}
}

// workloadSize is the one sizing rule of a sandbox's VM: the guest's own
// vCPUs and memory plus a workload's limits, vCPUs within maxCPUs (more
// would only time-share the host's; a limit above them is a ceiling the
// workload cannot reach on runc either).
func workloadSize(baseCPUs, baseMiB, cpus, mib, maxCPUs uint32) struct{ CPUs, MemoryMiB uint32 } {
	return struct{ CPUs, MemoryMiB uint32 }{max(baseCPUs, min(satAdd(baseCPUs, cpus), maxCPUs)), satAdd(baseMiB, mib)}
}

// satAdd adds saturating, not wrapping: validation refuses what is too
// big, naming it, where a wrapped sum would be a small VM.
func satAdd(a, b uint32) uint32 {
	return uint32(min(uint64(a)+uint64(b), math.MaxUint32))
}

// CheckHostCPUs refuses n vCPUs (0: the default) when the host has fewer
// CPUs to run them on (those this process may use): more would only
// time-share the host's, and a guest that believes it has them sizes its
// work for them (AddWorkload stays within the same bound). It returns the
// vCPU count, or an error naming field.
func CheckHostCPUs(field string, n uint64) (uint32, error) {
	cpus, err := hypervisor.CheckCPUs(field, n)
	if err != nil {
		return 0, err
	}
	if host := runtime.NumCPU(); int(cpus) > host {
		return 0, fmt.Errorf("%s %d: more than the host's %d CPUs: %w", field, cpus, host, errdefs.ErrInvalidArgument)
	}
	return cpus, nil
}
