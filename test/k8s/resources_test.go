package k8s

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// memTotalMiB is MemTotal of a /proc/meminfo, in MiB.
func memTotalMiB(t *testing.T, meminfo string) int {
	t.Helper()
	for _, l := range strings.Split(meminfo, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatalf("no MemTotal in %q", meminfo)
	return 0
}

// TestLimitsSizeVM: on vc a pod's limits size its VM (the shim's 1 vCPU
// and 256 MiB plus the limits: nproc and MemTotal in the guest), against
// a pod without limits; on runc the container sees the host's CPUs and
// memory. Both give the container the memory limit in its cgroup.
func TestLimitsSizeVM(t *testing.T) {
	t.Parallel()
	hostMem := memTotalMiB(t, readHostFile("/proc/meminfo"))
	forEachClass(t, "limits", func(t *testing.T, n *ns, rc string) {
		c := func(res string) string {
			return fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
%s`, image, res)
		}
		n.apply(podManifest("limited", rc, c(`    resources:
      limits: {cpu: "1", memory: 256Mi}
`)) + "---\n" + podManifest("unlimited", rc, c("")))
		n.waitReady("limited")
		n.waitReady("unlimited")
		nproc := func(p string) int {
			v, err := strconv.Atoi(strings.TrimSpace(n.exec(p, "", "nproc")))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		limN, unlN := nproc("limited"), nproc("unlimited")
		limM := memTotalMiB(t, n.exec("limited", "", "cat", "/proc/meminfo"))
		unlM := memTotalMiB(t, n.exec("unlimited", "", "cat", "/proc/meminfo"))
		t.Logf("%s: limited pod nproc %d MemTotal %d MiB; unlimited nproc %d MemTotal %d MiB", rc, limN, limM, unlN, unlM)
		if rc == "vc" {
			if want := min(2, runtime.NumCPU()); limN != want || unlN != 1 {
				t.Errorf("nproc: limited %d, unlimited %d; want %d and 1", limN, unlN, want)
			}
			if limM-unlM < 200 || limM-unlM > 300 || unlM > 300 {
				t.Errorf("MemTotal: limited %d MiB, unlimited %d MiB: want about 256 MiB more with the limit, at most 300 without", limM, unlM)
			}
		} else if limN != runtime.NumCPU() || limM != hostMem {
			t.Errorf("runc: nproc %d, MemTotal %d MiB; want the host's %d and %d", limN, limM, runtime.NumCPU(), hostMem)
		}
		// cgroup v2 in the guest, v1 on these hosts for runc.
		lim := strings.TrimSpace(n.exec("limited", "", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"))
		if lim != strconv.Itoa(256<<20) {
			t.Errorf("the container's memory limit in its cgroup: %q, want %d", lim, 256<<20)
		}
	})
}

// TestOOMKilled: a container past its memory limit is killed and says
// OOMKilled, exit code 137.
func TestOOMKilled(t *testing.T) {
	t.Parallel()
	forEachClass(t, "oom", func(t *testing.T, n *ns, rc string) {
		n.apply(strings.Replace(podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["tail", "/dev/zero"]
    resources:
      limits: {memory: 64Mi}
`, image)), "spec:\n", "spec:\n  restartPolicy: Never\n", 1))
		if out, err := n.kErr(nil, "wait", "--for=jsonpath={.status.phase}=Failed", "pod/p", "--timeout="+podTimeout); err != nil {
			t.Fatalf("pod not Failed: %v: %s\n%s", err, out, n.describe("p"))
		}
		term := n.pod("p").ContainerStatuses[0].State.Terminated
		if term == nil || term.Reason != "OOMKilled" || term.ExitCode != 137 {
			t.Errorf("terminated state %+v, want reason OOMKilled, exit code 137", term)
		}
	})
}

// TestInPlaceResize: `kubectl patch --subresource resize` of a running
// pod's CPU and memory (GA since 1.35) changes the container's cgroup
// limits with no restart, and the pod's status shows the new resources;
// on vc the VM grows too (memory hotplugged: MemTotal in the guest), and
// shrinks back.
func TestInPlaceResize(t *testing.T) {
	t.Parallel()
	forEachClass(t, "resize", func(t *testing.T, n *ns, rc string) {
		n.apply(resizablePod(rc, "500m", "256Mi", "500m", "256Mi"))
		n.waitReady("p")
		meminfo := func() int { return memTotalMiB(t, n.exec("p", "", "cat", "/proc/meminfo")) }
		limits := func() (cpu, mem string) {
			cpu = n.cpuQuota("p")
			mem = strings.TrimSpace(n.exec("p", "", "sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"))
			return cpu, mem
		}
		resize := func(cpu, mem string) {
			t.Helper()
			n.k("patch", "pod", "p", "--subresource", "resize", "--patch", fmt.Sprintf(
				`{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":%q,"memory":%q},"limits":{"cpu":%q,"memory":%q}}}]}}`, cpu, mem, cpu, mem))
			n.waitFor("the pod's status showing memory "+mem, 3*time.Minute, func() bool {
				return n.jsonpath("pod/p", "{.status.containerStatuses[0].resources.limits.memory}") == mem
			})
		}
		before := meminfo()
		resize("1", "512Mi")
		cpu, mem := limits()
		after := meminfo()
		t.Logf("%s: after the resize up: cpu %q, memory %q, MemTotal %d -> %d MiB", rc, cpu, mem, before, after)
		if !strings.HasPrefix(cpu, "100000") || mem != strconv.Itoa(512<<20) {
			t.Errorf("the container's cgroup after the resize: cpu %q, memory %q; want a 100000 µs quota and %d", cpu, mem, 512<<20)
		}
		if rc == "vc" && (after-before < 200 || after-before > 300) {
			t.Errorf("MemTotal in the guest %d -> %d MiB: want about 256 MiB more (the VM grown)", before, after)
		}
		resize("500m", "256Mi")
		if _, mem := limits(); mem != strconv.Itoa(256<<20) {
			t.Errorf("the container's memory limit after the resize down: %q, want %d", mem, 256<<20)
		}
		if down := meminfo(); rc == "vc" && down > before+50 {
			t.Errorf("MemTotal in the guest after the resize down: %d MiB, want about %d (the VM shrunk)", down, before)
		}
		if p := n.pod("p"); len(p.ContainerStatuses) != 1 || p.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("the container restarted: %+v", p.ContainerStatuses)
		}
	})
}

// resizablePod is pod p of runtime class rc: one container sleeping, with
// these requests and limits, that takes an in-place resize of either
// without a restart.
func resizablePod(rc, reqCPU, reqMem, limCPU, limMem string) string {
	return podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    resizePolicy:
    - {resourceName: cpu, restartPolicy: NotRequired}
    - {resourceName: memory, restartPolicy: NotRequired}
    resources:
      requests: {cpu: %s, memory: %s}
      limits: {cpu: %s, memory: %s}
`, image, reqCPU, reqMem, limCPU, limMem))
}

// cpuQuota is the CFS quota line of pod's container (cgroup v2's cpu.max,
// or v1's cpu.cfs_quota_us).
func (n *ns) cpuQuota(pod string) string {
	return strings.TrimSpace(n.exec(pod, "", "sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
}
