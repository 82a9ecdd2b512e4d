package oci

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
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
