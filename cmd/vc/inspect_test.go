package main

import (
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
)

// vc inspect -f runs docker's templates over the inspect JSON: docker's
// field names, vc's own records, and docker's json and join functions.
func TestInspectFormat(t *testing.T) {
	sb := vc.SandboxStatus{ID: "web", State: vc.StateRunning}
	sb.Config.Hypervisor.MemoryMiB = 256
	ports := []vc.PortMapping{{HostPort: 8080, ContainerPort: 80}}
	info := inspectInfo{ID: strings.Repeat("ab", 32), Name: "web", Sandbox: sb,
		State:           inspectState{Status: "running", Running: true, Pid: 4242},
		Config:          inspectConfig{Cmd: []string{"httpd", "-f"}},
		NetworkSettings: inspectNetwork{IPAddress: vc.NATGuestAddr.String(), Ports: inspectPorts(ports)}}
	for format, want := range map[string]string{
		"{{.State.Status}}":                         "running",
		"{{.NetworkSettings.IPAddress}}":            "10.0.2.15",
		"{{.Name}} {{.Id}}":                         "web " + strings.Repeat("ab", 32),
		"{{.State.Pid}}":                            "4242",
		"{{.sandbox.config.hypervisor.memory_mib}}": "256",
		"{{json .NetworkSettings.Ports}}":           `{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}]}`,
		`{{join .Config.Cmd " "}}`:                  "httpd -f",
		"{{upper .State.Status}}":                   "RUNNING",
	} {
		tmpl, err := inspectTemplate(format)
		if err != nil {
			t.Fatalf("%q: %v", format, err)
		}
		var b strings.Builder
		if err := printInspect(&b, info, tmpl); err != nil || b.String() != want+"\n" {
			t.Errorf("-f %q: %q, %v; want %q", format, b.String(), err, want)
		}
	}
	if _, err := inspectTemplate("{{.State"); err == nil || !strings.Contains(err.Error(), "--format") {
		t.Errorf("bad template: %v", err)
	}
	// Without -f, the JSON: docker's fields and vc's records.
	var b strings.Builder
	if err := printInspect(&b, info, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"Id": "abab`, `"IPAddress": "10.0.2.15"`, `"sandbox": {`, `"containers": null`} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("inspect JSON lacks %s:\n%s", s, b.String())
		}
	}
}

// The container's docker fields come from its record; a stopped one is
// "exited", as docker says.
func TestDockerStatus(t *testing.T) {
	for st, want := range map[vc.State]string{vc.StateStopped: "exited", vc.StateRunning: "running", vc.StatePaused: "paused", vc.StateCreated: "created"} {
		if got := dockerStatus(st); got != want {
			t.Errorf("dockerStatus(%s) = %s, want %s", st, got, want)
		}
	}
}

// stats: CPU % from two samples, and the memory limit of a container
// without one is its VM's memory, not "unlimited".
func TestStatsFigures(t *testing.T) {
	t0 := time.Now()
	if got := cpuPercent(statSample{at: t0, cpuNs: 1e9}, statSample{at: t0.Add(2 * time.Second), cpuNs: 2e9}); got != "50.00%" {
		t.Errorf("cpuPercent: %s, want 50.00%%", got)
	}
	if got := cpuPercent(statSample{at: t0, cpuNs: 5}, statSample{at: t0, cpuNs: 5}); got != "--" {
		t.Errorf("cpuPercent of one moment: %s", got)
	}
	const max = ^uint64(0) // cgroup v2's "max"
	for _, c := range []struct {
		cgroup uint64
		vmMiB  uint32
		want   uint64
	}{
		{max, 256, 256 << 20},
		{0, 256, 256 << 20},
		{64 << 20, 256, 64 << 20},
		{max, 0, uint64(hypervisor.DefaultMemoryMiB) << 20},
	} {
		if got := memoryLimit(c.cgroup, c.vmMiB); got != c.want {
			t.Errorf("memoryLimit(%d, %d) = %d, want %d", c.cgroup, c.vmMiB, got, c.want)
		}
	}
	if got := human(memoryLimit(max, 256)); got != "256.00MiB" {
		t.Errorf("the limit shows as %s", got)
	}
}
