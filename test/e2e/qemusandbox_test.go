package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestQEMUSeccomp: QEMU runs under its seccomp sandbox (-sandbox on: no
// spawning, no privilege elevation, no obsolete calls) and dumps no core
// (RLIMIT_CORE 0), and the sandbox still works: the VM boots and its agent
// answers.
func TestQEMUSeccomp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newSandbox(ctx, t, "e2e-seccomp", "")
	pid := s.Status().VMPid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var mode, filters string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			mode = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "Seccomp_filters:"); ok {
			filters = strings.TrimSpace(v)
		}
	}
	// 2: a filter mode; every thread of QEMU has it.
	if mode != "2" || filters == "" || filters == "0" {
		t.Fatalf("qemu %d: Seccomp %q, Seccomp_filters %q; want a filter", pid, mode, filters)
	}
	// No core dump of the guest's memory.
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(l, "Max core file size") && strings.Fields(l)[4] != "0" {
			t.Errorf("qemu %d: %s; want 0", pid, l)
		}
	}
	if _, err := s.Metrics(ctx); err != nil {
		t.Fatalf("the agent under a sandboxed QEMU: %v", err)
	}
}
