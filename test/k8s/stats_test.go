package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// summary is the part of the kubelet's /stats/summary the test reads.
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		CPU        *cpuStats `json:"cpu"`
		Memory     *memStats `json:"memory"`
		Containers []struct {
			Name   string    `json:"name"`
			CPU    *cpuStats `json:"cpu"`
			Memory *memStats `json:"memory"`
		} `json:"containers"`
		Volume []struct {
			Name      string `json:"name"`
			UsedBytes uint64 `json:"usedBytes"`
		} `json:"volume"`
	} `json:"pods"`
}

type cpuStats struct {
	UsageNanoCores       uint64 `json:"usageNanoCores"`
	UsageCoreNanoSeconds uint64 `json:"usageCoreNanoSeconds"`
}

type memStats struct {
	UsageBytes      uint64 `json:"usageBytes"`
	WorkingSetBytes uint64 `json:"workingSetBytes"`
}

// guestCgroup is what the container reads of its own cgroup: memory in
// use, its inactive file pages (working set = the difference, as the
// kubelet counts it) and CPU time in ns. cgroup v2 in a vc guest, v1 on
// these hosts for runc.
func (n *ns) guestCgroup(pod string) (usage, inactiveFile, cpuNs uint64) {
	n.t.Helper()
	out := n.exec(pod, "", "sh", "-c", `if [ -f /sys/fs/cgroup/memory.current ]; then
  cat /sys/fs/cgroup/memory.current
  grep '^inactive_file ' /sys/fs/cgroup/memory.stat | cut -d' ' -f2
  echo $(( $(grep '^usage_usec ' /sys/fs/cgroup/cpu.stat | cut -d' ' -f2) * 1000 ))
else
  cat /sys/fs/cgroup/memory/memory.usage_in_bytes
  grep '^total_inactive_file ' /sys/fs/cgroup/memory/memory.stat | cut -d' ' -f2
  cat /sys/fs/cgroup/cpuacct/cpuacct.usage
fi`)
	f := strings.Fields(out)
	if len(f) != 3 {
		n.t.Fatalf("the container's cgroup: %q", out)
	}
	var v [3]uint64
	for i := range f {
		x, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			n.t.Fatalf("the container's cgroup: %q: %v", out, err)
		}
		v[i] = x
	}
	return v[0], v[1], v[2]
}

// TestSummaryStats: the kubelet's summary API (what `kubectl top`, the
// metrics server and eviction read) gives a vc pod's container the CPU
// and memory the guest's cgroup of that container shows, and the pod's
// emptyDir its usage.
//
// Where the figures come from: the kubelet's CRI stats provider (the
// default for containerd) takes each container's CPU and memory from
// cAdvisor when the container has a cgroup on the host, else from the
// CRI (containerd -> the shim's Stats -> the agent's cgroup figures in
// the guest). A vc container has no host cgroup, so its figures are the
// guest's; reading QEMU's would be wrong (QEMU's RSS is the guest's
// whole RAM as touched, its CPU includes the emulation). The
// PodAndContainerStatsFromCRI gate would take runc's figures from
// containerd too and change nothing for vc, so the cluster keeps the
// default. The pod-level totals are read from the pod's host cgroup
// (cAdvisor, or containerd's sandbox stats with the gate): on vc the
// shim puts QEMU in a cgroup of its own under it (vm_cgroup), so they are
// the VM's host cost: non-zero, at least the container's working set (the
// guest's pages are QEMU's), at most the pod's limit and the
// RuntimeClass's overhead, the CPU time QEMU's own; QEMU's cgroup is
// gone once the pod is.
//
// The container holds 16 MiB in a shell variable (filling it takes the
// guest's shell about 13 s under TCG, 48 MiB took over 3 minutes with
// the 500m limit and a busy host) and spins under a 500m limit. Tolerances: memory within 8 MiB or 10% of the guest's
// working set (the kubelet's reading and the exec's are seconds apart,
// and the exec's own shell is charged to the same cgroup); CPU within
// 0.15 cores of the guest's own rate over 10 s (containerd samples the
// counter every second) and the cumulative time between the guest's
// readings before and after (less 3 s of 500m for the sample's age).
// Either reading QEMU would miss by far: its RSS is hundreds of MiB.
func TestSummaryStats(t *testing.T) {
	t.Parallel()
	forEachClass(t, "stats", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "dd if=/dev/zero of=/data/f bs=1M count=10 2>/dev/null; x=$(head -c 16777216 /dev/zero | tr '\\0' a); touch /tmp/ready; while :; do :; done"]
    resources:
      limits: {cpu: 500m, memory: 256Mi}
    volumeMounts: [{name: d, mountPath: /data}]
  volumes: [{name: d, emptyDir: {}}]
`, image)))
		n.waitReady("p")
		n.waitFor("the container holding its 16 MiB", 3*time.Minute, func() bool {
			_, err := n.kErr(nil, "exec", "p", "--", "test", "-e", "/tmp/ready")
			return err == nil
		})
		get := func() summary {
			t.Helper()
			var s summary
			if err := json.Unmarshal([]byte(n.c.kubectl(t, "get", "--raw", "/api/v1/nodes/vc-node/proxy/stats/summary")), &s); err != nil {
				t.Fatal(err)
			}
			return s
		}
		type reading struct {
			pod, ctr     cpuStats
			podMem, cMem memStats
			volume       uint64
			found        bool
		}
		read := func() reading {
			var r reading
			for _, p := range get().Pods {
				if p.PodRef.Namespace != n.name || p.PodRef.Name != "p" {
					continue
				}
				if p.CPU != nil {
					r.pod = *p.CPU
				}
				if p.Memory != nil {
					r.podMem = *p.Memory
				}
				for _, c := range p.Containers {
					if c.Name == "c" && c.CPU != nil && c.Memory != nil {
						r.ctr, r.cMem, r.found = *c.CPU, *c.Memory, true
					}
				}
				for _, v := range p.Volume {
					if v.Name == "d" {
						r.volume = v.UsedBytes
					}
				}
			}
			return r
		}
		var k reading
		n.waitFor("the pod's container, totals and emptyDir in the summary", 3*time.Minute, func() bool {
			k = read()
			// The pod totals come from cAdvisor, which finds a new
			// pod's cgroup some seconds after its containers.
			return k.found && k.ctr.UsageNanoCores > 0 && k.volume > 0 && k.podMem.WorkingSetBytes > 0 && k.pod.UsageCoreNanoSeconds > 0
		})
		var vmCgroup map[string]string // vc: QEMU's cgroups, by controller
		var qemu int
		if rc == "vc" {
			qemu, vmCgroup = n.qemuInPodCgroup("p")
		}

		// Memory: the guest's working set around the kubelet's.
		u1, i1, c1 := n.guestCgroup("p")
		k = read()
		// The pod's totals are compared below with what was in its
		// cgroup before: a container's figures and the pod's come from
		// samples taken at different times (cAdvisor's housekeeping,
		// every 10-15 s), so those of one summary are not comparable.
		early, earlyAt := k, time.Now()
		var qemu0 time.Duration
		if qemu != 0 {
			qemu0 = procCPU(t, qemu)
		}
		u2, i2, c2 := n.guestCgroup("p")
		ws1, ws2 := int64(u1-i1), int64(u2-i2)
		kws := int64(k.cMem.WorkingSetBytes)
		t.Logf("%s: container working set: kubelet %.1f MiB, guest %.1f / %.1f MiB; usage kubelet %.1f MiB, guest %.1f MiB; pod totals: working set %.1f MiB, %.3f cores",
			rc, mib(kws), mib(ws1), mib(ws2), mib(int64(k.cMem.UsageBytes)), mib(int64(u2)), mib(int64(k.podMem.WorkingSetBytes)), float64(k.pod.UsageNanoCores)/1e9)
		tol := max(int64(8<<20), ws2/10)
		if kws < 14<<20 || kws < min(ws1, ws2)-tol || kws > max(ws1, ws2)+tol {
			t.Errorf("the kubelet's working set %.1f MiB: want the guest's %.1f-%.1f MiB (the container holds 16 MiB), within %.1f MiB", mib(kws), mib(ws1), mib(ws2), mib(tol))
		}
		// CPU: cumulative between the guest's readings, and the rate.
		if k.ctr.UsageCoreNanoSeconds+3e9/2 < c1 || k.ctr.UsageCoreNanoSeconds > c2+1e8 {
			t.Errorf("the kubelet's CPU time %.2f s: want between the guest's %.2f s and %.2f s", float64(k.ctr.UsageCoreNanoSeconds)/1e9, float64(c1)/1e9, float64(c2)/1e9)
		}
		guestRate := n.guestCPURate("p", 10*time.Second)
		kRate := float64(read().ctr.UsageNanoCores) / 1e9
		t.Logf("%s: CPU: kubelet %.3f cores, the container's counter %.3f cores over 10 s of its own clock (limit 0.5)", rc, kRate, guestRate)
		// The guest's rate is the counter's over the guest's own clock,
		// both read in one exec: the exec's latency (seconds under load)
		// is in neither. The test once divided by the host's time
		// between two execs' returns and read 5.7 cores for a 0.5 limit
		// (docs/kubernetes.md). The kubelet's rate is logged, not
		// compared: containerd's and cAdvisor's samples are stamped when
		// a stats call returns, not when the counter was read, so a slow
		// call skews it the same way (vc read 9.8 cores once, runc 0.816
		// against 0.489); the cumulative time above is the exact check.
		// At most the 0.5 limit (CFS's 100 ms periods: within 0.6 over
		// 10 s); less when the node's 2 cores are loaded (runc).
		if guestRate <= 0 || guestRate > 0.6 {
			t.Errorf("the container's CPU rate %.3f cores over its own clock: want above 0 and within its 0.5 limit (0.6)", guestRate)
		}
		if kRate <= 0 {
			t.Errorf("the kubelet's CPU rate %.3f cores: want the spinning container's (the guest's counter: %.3f)", kRate, guestRate)
		}

		// The emptyDir: the kubelet measures the host directory the
		// guest's writes land in (9p).
		du := strings.Fields(n.exec("p", "", "du", "-k", "/data"))
		guestKiB, _ := strconv.ParseUint(du[0], 10, 64)
		n.waitFor("the emptyDir's 10 MiB in the summary", 2*time.Minute, func() bool {
			k = read()
			return k.volume >= 10<<20
		})
		t.Logf("%s: emptyDir: kubelet %d KiB, du in the container %d KiB", rc, k.volume>>10, guestKiB)
		if d := int64(k.volume>>10) - int64(guestKiB); d < -512 || d > 512 {
			t.Errorf("the emptyDir's usage: kubelet %d KiB, du in the container %d KiB: want within 512 KiB", k.volume>>10, guestKiB)
		}

		// The pod's totals: its cgroup on the node, which holds the
		// containers on runc and the VM's QEMU on vc (the shim's
		// vm_cgroup): QEMU's RSS has the guest's pages the container
		// touched, and its CPU time is the vCPUs' and the emulation's.
		// Past the oldest sample the summary can hold of what was read
		// at earlyAt.
		time.Sleep(time.Until(earlyAt.Add(30 * time.Second)))
		k = read()
		podCPU := time.Duration(k.pod.UsageCoreNanoSeconds)
		t.Logf("%s: pod totals: working set %.1f MiB (container %.1f), CPU %.2f s (container %.2f s; %.2f s 30 s before), %.3f cores", rc,
			mib(int64(k.podMem.WorkingSetBytes)), mib(int64(k.cMem.WorkingSetBytes)),
			podCPU.Seconds(), float64(k.ctr.UsageCoreNanoSeconds)/1e9, float64(early.ctr.UsageCoreNanoSeconds)/1e9, float64(k.pod.UsageNanoCores)/1e9)
		if k.podMem.WorkingSetBytes < k.cMem.WorkingSetBytes {
			t.Errorf("the pod's working set %.1f MiB below its container's %.1f MiB", mib(int64(k.podMem.WorkingSetBytes)), mib(int64(k.cMem.WorkingSetBytes)))
		}
		switch rc {
		case "runc":
			// The container's cgroup is in the pod's.
			if k.pod.UsageCoreNanoSeconds < early.ctr.UsageCoreNanoSeconds {
				t.Errorf("the pod's CPU time %.2f s below its container's of 30 s before, %.2f s", podCPU.Seconds(), float64(early.ctr.UsageCoreNanoSeconds)/1e9)
			}
		case "vc":
			// The pod's cgroup holds QEMU alone: its CPU time is
			// QEMU's, between QEMU's own before and now. It is not
			// compared with the container's: that is guest time, and
			// under TCG the guest's clock runs on while the host
			// deschedules a vCPU thread, whose stall the guest charges
			// to the task it ran (no steal time): on a loaded host the
			// container's CPU time exceeds what QEMU got (a run: 39.8 s
			// in the guest, 27.2 s for QEMU; docs/kubernetes.md).
			qemu1 := procCPU(t, qemu)
			if podCPU < qemu0-100*time.Millisecond || podCPU > qemu1+100*time.Millisecond {
				t.Errorf("the pod's CPU time %.2f s: want QEMU's, between its %.2f s 30 s before and its %.2f s now", podCPU.Seconds(), qemu0.Seconds(), qemu1.Seconds())
			}
		}
		if rc == "vc" {
			// At most the VM's memory and QEMU's own: the pod's limit
			// plus the RuntimeClass's overhead, which is the pod
			// cgroup's memory limit the kubelet set.
			over := n.jsonpath("pod/p", "{.spec.overhead.memory}")
			q, err := binaryQuantity(over)
			if err != nil {
				t.Fatalf("the vc pod's spec.overhead.memory %q: %v (the RuntimeClass's overhead)", over, err)
			}
			bound := 256<<20 + q
			if int64(k.podMem.WorkingSetBytes) > bound {
				t.Errorf("the pod's working set %.1f MiB: more than its 256 MiB limit and the %s overhead", mib(int64(k.podMem.WorkingSetBytes)), over)
			}
		}

		if vmCgroup != nil {
			// After the pod: nothing of the sandbox's cgroup is left.
			n.k("delete", "pod", "p", "--wait", "--timeout=300s")
			n.waitFor("the VM's cgroup gone", 2*time.Minute, func() bool {
				for ctl, path := range vmCgroup {
					if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctl, path)); err == nil {
						return false
					}
				}
				return true
			})
		}

	})
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// binaryQuantity is a Kubernetes memory quantity in bytes: a number with
// a Ki, Mi or Gi suffix, or none (what kube-up.sh's overhead is).
func binaryQuantity(q string) (int64, error) {
	mult := int64(1)
	for suf, m := range map[string]int64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30} {
		if v, ok := strings.CutSuffix(q, suf); ok {
			q, mult = v, m
		}
	}
	n, err := strconv.ParseInt(q, 10, 64)
	return n * mult, err
}

// guestCPURate is the CPU rate of pod's container over d: its cgroup's
// counter read twice in one exec, divided by the container's own clock
// between the readings (/proc/uptime, the guest's on vc), so that the
// exec's latency counts in neither.
func (n *ns) guestCPURate(pod string, d time.Duration) float64 {
	n.t.Helper()
	out := n.exec(pod, "", "sh", "-c", fmt.Sprintf(`cpu() { if [ -f /sys/fs/cgroup/cpu.stat ]; then echo $(( $(grep '^usage_usec ' /sys/fs/cgroup/cpu.stat | cut -d' ' -f2) * 1000 )); else cat /sys/fs/cgroup/cpuacct/cpuacct.usage; fi; }
a=$(cpu); ua=$(cut -d' ' -f1 /proc/uptime); sleep %d; b=$(cpu); ub=$(cut -d' ' -f1 /proc/uptime); echo $a $ua $b $ub`, int(d.Seconds())))
	f := strings.Fields(out)
	if len(f) != 4 {
		n.t.Fatalf("the container's CPU counter and clock: %q", out)
	}
	var v [4]float64
	for i := range f {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			n.t.Fatalf("the container's CPU counter and clock: %q: %v", out, err)
		}
		v[i] = x
	}
	if v[3] <= v[1] {
		n.t.Fatalf("the container's clock did not advance: %q", out)
	}
	return (v[2] - v[0]) / 1e9 / (v[3] - v[1])
}

// qemuInPodCgroup finds the QEMU of vc pod pod among the node's and
// checks that it is in a cgroup of its own under the pod's (the shim's
// vm_cgroup), in the cpuacct, memory and pids hierarchies; it returns
// those cgroups by controller.
func (n *ns) qemuInPodCgroup(pod string) (int, map[string]string) {
	n.t.Helper()
	uid := n.jsonpath("pod/"+pod, "{.metadata.uid}")
	var found map[string]string
	var qemu int
	for _, pid := range n.c.qemuPids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue
		}
		cg := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) != 3 {
				continue
			}
			for _, c := range strings.Split(f[1], ",") {
				cg[c] = f[2]
			}
		}
		if !strings.Contains(cg["memory"], "pod"+uid+"/") {
			continue
		}
		if found != nil {
			n.t.Fatalf("two QEMU processes in pod %s's cgroup", pod)
		}
		found, qemu = map[string]string{}, pid
		for _, c := range []string{"cpuacct", "memory", "pids"} {
			if !strings.Contains(cg[c], "/pod"+uid+"/") {
				n.t.Errorf("QEMU %d's %s cgroup %q: not under pod %s's (uid %s)", pid, c, cg[c], pod, uid)
			}
			found[c] = cg[c]
		}
		n.t.Logf("QEMU %d of pod %s: cgroups %v (cpu: %q)", pid, pod, found, cg["cpu"])
	}
	if found == nil {
		n.t.Fatalf("no QEMU in pod %s's cgroup (uid %s): the shim's vm_cgroup", pod, uid)
	}
	return qemu, found
}

// procCPU is process pid's user and system CPU time, its threads' and
// its reaped ones' (/proc/PID/stat utime + stime, in clock ticks of
// 100 Hz).
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's closing parenthesis: state is
	// field 3, utime 14 and stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}
