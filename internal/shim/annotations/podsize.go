package annotations

import (
	"fmt"
	"math"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// CRI pod sizing annotations: containerd's CRI plugin copies the kubelet's
// PodSandboxConfig.Linux.Resources (the sum of the pod's container limits)
// onto the sandbox container.
const (
	CRISandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	CRISandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	CRISandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// PodResources reads what a pod's containers may use, from the CRI sandbox
// annotations: CPUs is quota/period rounded up, MemoryMiB the memory limit
// rounded up to a MiB. A limit that is absent, zero or negative (unlimited)
// gives zero; a value that is not a number is an error naming the
// annotation.
func PodResources(annotations map[string]string) (cpus, memoryMiB uint32, err error) {
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

// SpecResources reads what a container may use from its OCI spec, as
// PodResources does for a pod: CPU quota over period rounded up, the memory
// limit rounded up to a MiB; zero where there is no limit.
func SpecResources(spec *specs.Spec) (cpus, memoryMiB uint32, err error) {
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
