package annotations

import (
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/vc"
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
	return vc.Limits(period, quota, mem, "annotation "+CRISandboxCPUQuota, "annotation "+CRISandboxMemory)
}

// SpecResources reads what a container may use from its OCI spec, as
// PodResources does for a pod (vc.ResourceLimits).
func SpecResources(spec *specs.Spec) (cpus, memoryMiB uint32, err error) {
	if spec == nil || spec.Linux == nil {
		return 0, 0, nil
	}
	return vc.ResourceLimits(spec.Linux.Resources)
}
