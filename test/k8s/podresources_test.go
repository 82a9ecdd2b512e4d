package k8s

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPodLevelResources: pod-level resources (spec.resources, the
// PodLevelResources feature, beta and on by default in 1.37) reach the
// shim as the sandbox's CRI annotations (the kubelet's
// LinuxPodSandboxConfig.Resources, which containerd turns into
// io.kubernetes.cri.sandbox-cpu-quota/-period/-memory) and size the VM:
// 1 CPU and 512 MiB for the pod give the guest 2 vCPUs (its own 1 and
// the pod's) and about 768 MiB; the container's cgroup gets the pod's
// memory limit. On runc the container sees the host's CPUs and memory.
func TestPodLevelResources(t *testing.T) {
	t.Parallel()
	hostMem := memTotalMiB(t, readHostFile("/proc/meminfo"))
	forEachClass(t, "podres", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  resources:
    limits: {cpu: "1", memory: 512Mi}
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
`, image)))
		n.waitReady("p")
		nproc, err := strconv.Atoi(strings.TrimSpace(n.exec("p", "", "nproc")))
		if err != nil {
			t.Fatal(err)
		}
		mem := memTotalMiB(t, n.exec("p", "", "cat", "/proc/meminfo"))
		t.Logf("%s: pod limits 1 CPU 512Mi: nproc %d, MemTotal %d MiB", rc, nproc, mem)
		if rc == "vc" {
			if nproc != 2 || mem < 700 || mem > 800 {
				t.Errorf("vc: nproc %d, MemTotal %d MiB; want 2 and about 768 (the guest's 1 vCPU and 256 MiB plus the pod's)", nproc, mem)
			}
		} else if nproc != runtime.NumCPU() || mem != hostMem {
			t.Errorf("runc: nproc %d, MemTotal %d MiB; want the host's %d and %d", nproc, mem, runtime.NumCPU(), hostMem)
		}
		// The pod's cgroup holds the pod's limit on runc (the container's
		// own is unlimited); in the guest the container's cgroup is the
		// one there is.
		if rc == "vc" {
			if lim := strings.TrimSpace(n.exec("p", "", "cat", "/sys/fs/cgroup/memory.max")); lim != strconv.Itoa(512<<20) {
				t.Errorf("the container's memory limit in the guest: %q, want the pod's %d", lim, 512<<20)
			}
		}
	})
}

// TestResizeVCPUs: an in-place CPU resize from 500m to 2 CPUs hotplugs
// vCPUs (nproc in the guest 2 -> 3: the guest's own and the limit's,
// beyond the host's 2 CPUs, which the cluster's max_cpus = 4 allows),
// with no restart, and back to 500m (the quota follows; under TCG the
// vCPUs stay, QEMU cannot unplug them). A memory resize past the VM's
// maximum (the cluster's max_memory_mib = 2048) is refused by the shim,
// and the pod says so: condition PodResizeInProgress, reason Error, the
// message naming max_memory_mib; the container keeps its limits. On
// runc the CPU resize changes only the quota and the memory one is
// taken. Requests stay at 100m: the node's 2 CPUs are the scheduler's
// bound for requests, not for limits.
func TestResizeVCPUs(t *testing.T) {
	t.Parallel()
	forEachClass(t, "resizecpu", func(t *testing.T, n *ns, rc string) {
		n.apply(resizablePod(rc, "100m", "128Mi", "500m", "256Mi"))
		n.waitReady("p")
		nproc := func() int {
			v, err := strconv.Atoi(strings.TrimSpace(n.exec("p", "", "nproc")))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		quota := func() string {
			return strings.Fields(n.cpuQuota("p") + " x")[0]
		}
		resize := func(field, v string) {
			t.Helper()
			n.k("patch", "pod", "p", "--subresource", "resize", "--patch",
				fmt.Sprintf(`{"spec":{"containers":[{"name":"c","resources":{"limits":{%q:%q}}}]}}`, field, v))
		}
		waitLimit := func(field, v string) {
			t.Helper()
			n.waitFor("the pod's status showing "+field+" "+v, 3*time.Minute, func() bool {
				return n.jsonpath("pod/p", "{.status.containerStatuses[0].resources.limits."+field+"}") == v
			})
		}
		n0 := nproc()
		resize("cpu", "2")
		waitLimit("cpu", "2")
		n1, q1 := nproc(), quota()
		resize("cpu", "500m")
		waitLimit("cpu", "500m")
		n2, q2 := nproc(), quota()
		t.Logf("%s: nproc %d -> %d (2 CPUs) -> %d (500m); quota %s -> %s", rc, n0, n1, n2, q1, q2)
		if q1 != "200000" || q2 != "50000" {
			t.Errorf("CPU quota %s after the resize to 2 CPUs, %s back at 500m; want 200000 and 50000", q1, q2)
		}
		if rc == "vc" {
			if n0 != 2 || n1 != 3 {
				t.Errorf("vc: nproc %d at 500m, %d at 2 CPUs; want 2 and 3 (a vCPU hotplugged past the host's %d CPUs)", n0, n1, runtime.NumCPU())
			}
			if n2 != n1 {
				t.Errorf("vc: nproc %d back at 500m, want %d (TCG cannot unplug vCPUs: they stay)", n2, n1)
			}
		} else if n0 != runtime.NumCPU() || n1 != n0 || n2 != n0 {
			t.Errorf("runc: nproc %d, %d, %d; want the host's %d throughout", n0, n1, n2, runtime.NumCPU())
		}

		// Memory past what the VM may have (2048 MiB): refused on vc and
		// shown in the pod's conditions; runc takes it.
		resize("memory", "4Gi")
		if rc == "vc" {
			var msg string
			n.waitFor("PodResizeInProgress with reason Error", 2*time.Minute, func() bool {
				msg = n.jsonpath("pod/p", `{.status.conditions[?(@.type=="PodResizeInProgress")].reason}:{.status.conditions[?(@.type=="PodResizeInProgress")].message}`)
				return strings.HasPrefix(msg, "Error:")
			})
			t.Logf("vc: resize to 4Gi: %s", msg)
			if !strings.Contains(msg, "max_memory_mib") {
				t.Errorf("the resize error does not name the VM's maximum (max_memory_mib): %q", msg)
			}
			if got := n.jsonpath("pod/p", "{.status.containerStatuses[0].resources.limits.memory}"); got != "256Mi" {
				t.Errorf("the container's memory limit in the pod's status after the refused resize: %q, want 256Mi kept", got)
			}
			if lim := strings.TrimSpace(n.exec("p", "", "cat", "/sys/fs/cgroup/memory.max")); lim != strconv.Itoa(256<<20) {
				t.Errorf("the container's cgroup memory limit after the refused resize: %q, want %d kept", lim, 256<<20)
			}
		} else {
			waitLimit("memory", "4Gi")
		}
		if p := n.pod("p"); len(p.ContainerStatuses) != 1 || p.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("the container restarted: %+v", p.ContainerStatuses)
		}
	})
}
