package annotations

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPodResources(t *testing.T) {
	for _, c := range []struct {
		name      string
		ann       map[string]string
		cpus, mib uint32
		err       string
	}{
		{"none", nil, 0, 0, ""},
		{"unlimited", map[string]string{CRISandboxCPUPeriod: "100000", CRISandboxCPUQuota: "-1", CRISandboxMemory: "0"}, 0, 0, ""},
		{"one and a half CPUs, 100 MiB + 1 byte", map[string]string{CRISandboxCPUPeriod: "100000", CRISandboxCPUQuota: "150000", CRISandboxMemory: "104857601"}, 2, 101, ""},
		{"quota without period", map[string]string{CRISandboxCPUQuota: "200000"}, 0, 0, ""},
		{"exact", map[string]string{CRISandboxCPUPeriod: "50000", CRISandboxCPUQuota: "100000", CRISandboxMemory: "268435456"}, 2, 256, ""},
		{"bad quota", map[string]string{CRISandboxCPUPeriod: "100000", CRISandboxCPUQuota: "1.5"}, 0, 0, CRISandboxCPUQuota},
		{"bad memory", map[string]string{CRISandboxMemory: "1Gi"}, 0, 0, CRISandboxMemory},
		{"absurd memory", map[string]string{CRISandboxMemory: "9223372036854775807"}, 0, 0, CRISandboxMemory},
	} {
		cpus, mib, err := PodResources(c.ann)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("%s: err %v, want an invalid argument naming %s", c.name, err, c.err)
			}
			continue
		}
		if err != nil || cpus != c.cpus || mib != c.mib {
			t.Errorf("%s: %d CPUs, %d MiB, %v; want %d, %d", c.name, cpus, mib, err, c.cpus, c.mib)
		}
	}
}

func TestSpecResources(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	i := func(v int64) *int64 { return &v }
	spec := func(r *specs.LinuxResources) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{Resources: r}} }
	for _, c := range []struct {
		name      string
		spec      *specs.Spec
		cpus, mib uint32
	}{
		{"no spec", nil, 0, 0},
		{"no resources", &specs.Spec{}, 0, 0},
		{"half a CPU, 64 MiB", spec(&specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u(100000), Quota: i(50000)}, Memory: &specs.LinuxMemory{Limit: i(64 << 20)}}), 1, 64},
		{"unlimited", spec(&specs.LinuxResources{CPU: &specs.LinuxCPU{Period: u(100000), Quota: i(-1)}, Memory: &specs.LinuxMemory{Limit: i(-1)}}), 0, 0},
		{"shares only", spec(&specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u(1024)}}), 0, 0},
	} {
		cpus, mib, err := SpecResources(c.spec)
		if err != nil || cpus != c.cpus || mib != c.mib {
			t.Errorf("%s: %d CPUs, %d MiB, %v; want %d, %d", c.name, cpus, mib, err, c.cpus, c.mib)
		}
	}
	_, _, err := SpecResources(spec(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i(1 << 62)}}))
	if err == nil || !strings.Contains(err.Error(), "linux.resources.memory.limit") {
		t.Errorf("absurd memory limit: %v, want an error naming linux.resources.memory.limit", err)
	}
}
