package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/hostcgroup"
	"github.com/virtcontainers/vc/pkg/vc"
)

// procCgroup is pid's cgroup in the v1 hierarchy of controller.
func procCgroup(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (hostcgroup.IsV2() && f[0] == "0" || strings.Contains(","+f[1]+",", ","+controller+",")) {
			return f[2]
		}
	}
	t.Fatalf("pid %d: no %s cgroup in %q", pid, controller, b)
	return ""
}

// cgroupParent is a parent cgroup for the test's sandboxes (as a pod's
// is), removed at the test's end: call it before making the sandboxes,
// whose cleanups (Delete) then run first.
func cgroupParent(t *testing.T, name string) string {
	parent := fmt.Sprintf("/vc-e2e-%s-%d", name, os.Getpid())
	t.Cleanup(func() {
		for _, c := range []string{"cpuacct", "memory", "pids"} {
			unix.Rmdir(filepath.Join(hostcgroup.Root, c, parent))
		}
	})
	return parent
}

// checkThreadsInCgroup checks that every thread of pid is in the cpuacct,
// memory and pids cgroups at path (v1).
func checkThreadsInCgroup(t *testing.T, pid int, path string) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("qemu %d's threads: %d, %v", pid, len(tasks), err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/cgroup", pid, tid))
		if err != nil {
			continue // gone
		}
		in := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[2] == path {
				for _, c := range strings.Split(f[1], ",") {
					in[c] = true
				}
			}
		}
		for _, c := range []string{"cpuacct", "memory", "pids"} {
			if !in[c] {
				t.Errorf("qemu %d's thread %d not in the %s cgroup %s:\n%s", pid, tid, c, path, b)
			}
		}
	}
}

func cgroupInt(t *testing.T, controller, path, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(hostcgroup.Root, controller, path, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A sandbox with a cgroupsPath: QEMU (and passt, the NAT's helper) run in
// it from their start, under a parent of the test's (a pod's cgroup); the
// guest's RAM and QEMU's CPU time are counted there and in the parent;
// Delete removes the sandbox's cgroup and keeps the parent. A cgroup that
// exists already fails CreateSandbox, and so does an agent that does not
// answer in time, once QEMU runs in the cgroup: either leaves nothing.
func TestSandboxHostCgroup(t *testing.T) {
	if hostcgroup.IsV2() {
		t.Skip("the figures read are cgroup v1's; this host is v2")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	parent := cgroupParent(t, "pod")
	path := parent + "/e2e-cg"
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: "e2e-cg", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
		Cgroup:     vc.CgroupConfig{Path: path},
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.Status().VMPid
	for _, c := range []string{"cpuacct", "memory", "pids"} {
		if got := procCgroup(t, pid, c); got != path {
			t.Errorf("qemu (%d) in %s cgroup %q; want %q", pid, c, got, path)
		}
	}
	if got := procCgroup(t, pid, "cpu"); got == path {
		t.Errorf("mode account: qemu in the cpu cgroup %q", got)
	}
	if got := procCgroup(t, os.Getpid(), "memory"); got == path {
		t.Errorf("the test process (the owner) is in %q", got)
	}
	procs, _ := os.ReadFile(filepath.Join(hostcgroup.Root, "memory", path, "cgroup.procs"))
	t.Logf("processes in %s: %s", path, strings.Fields(string(procs)))
	// A booted guest (kernel, initrd unpacked, agent) and QEMU itself.
	mem := cgroupInt(t, "memory", path, "memory.usage_in_bytes")
	pmem := cgroupInt(t, "memory", parent, "memory.usage_in_bytes")
	cpu := cgroupInt(t, "cpuacct", path, "cpuacct.usage")
	t.Logf("sandbox cgroup: memory %d MiB (parent %d MiB), cpu %.2f s", mem>>20, pmem>>20, float64(cpu)/1e9)
	if mem < 64<<20 || pmem < mem {
		t.Errorf("memory.usage_in_bytes %d MiB, parent %d MiB: want at least 64 MiB (a booted guest and QEMU), the parent at least as much", mem>>20, pmem>>20)
	}
	if cpu < int64(500*time.Millisecond) {
		t.Errorf("cpuacct.usage %v: want at least a TCG boot's 0.5 s", time.Duration(cpu))
	}

	// The same path again: the cgroup is the sandbox's own.
	_, err = vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: "e2e-cg2", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
		Cgroup:     vc.CgroupConfig{Path: path},
	})
	if !errdefs.IsAlreadyExists(err) {
		t.Errorf("a second sandbox in the same cgroup: %v; want already exists", err)
	}
	noLeftovers(t, "e2e-cg2")

	// A create failing once QEMU runs in its cgroup (the agent not
	// answering in time) leaves neither.
	failPath := parent + "/e2e-cg3"
	saved := vc.BootTimeout
	vc.BootTimeout = time.Second // a TCG boot takes several
	_, err = vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: "e2e-cg3", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
		Cgroup:     vc.CgroupConfig{Path: failPath},
	})
	vc.BootTimeout = saved
	if err == nil {
		t.Fatal("a sandbox whose agent cannot answer within 1 s: created")
	}
	t.Logf("failed create: %v", err)
	noLeftovers(t, "e2e-cg3")
	for _, c := range []string{"cpuacct", "memory", "pids"} {
		if _, err := os.Stat(filepath.Join(hostcgroup.Root, c, failPath)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s cgroup %s of a failed create left: %v", c, failPath, err)
		}
	}

	s.Stop(ctx, 5*time.Second)
	if err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, "e2e-cg")
	for _, c := range []string{"cpuacct", "memory", "pids"} {
		if _, err := os.Stat(filepath.Join(hostcgroup.Root, c, path)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s cgroup %s left: %v", c, path, err)
		}
		if _, err := os.Stat(filepath.Join(hostcgroup.Root, c, parent)); err != nil {
			t.Errorf("the parent %s went: %v", parent, err)
		}
	}
}
