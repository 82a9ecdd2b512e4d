package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLivenessHTTPTCP: failing liveness probes of kind httpGet (the path
// goes away: 404) and tcpSocket (the listener goes away) restart their
// container in the same sandbox (on vc: the same VM, its boot id
// unchanged), as the exec kind does in TestLivenessRestart. The probes
// give a slow guest (TCG, a busy host) 2 s to start serving and 5 s to
// answer: one failure restarts the container, and a probe timing out
// before the path goes away, or a restarted container killed before its
// server is up, restarted it in CI for the wrong reason.
func TestLivenessHTTPTCP(t *testing.T) {
	t.Parallel()
	forEachClass(t, "liveprobe", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: http
    image: %[1]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo boot $(cat /proc/sys/kernel/random/boot_id); mkdir -p /www; touch /www/healthz; httpd -p 8080 -h /www; sleep 8; rm /www/healthz; exec sleep 3600"]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      initialDelaySeconds: 2
      periodSeconds: 2
      timeoutSeconds: 5
      failureThreshold: 1
  - name: tcp
    image: %[1]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo boot $(cat /proc/sys/kernel/random/boot_id); nc -ll -p 9090 -e true & sleep 8; kill $!; exec sleep 3600"]
    livenessProbe:
      tcpSocket: {port: 9090}
      initialDelaySeconds: 2
      periodSeconds: 2
      timeoutSeconds: 5
      failureThreshold: 1
`, image)))
		n.waitReady("p")
		for i, c := range []string{"http", "tcp"} {
			n.waitFor(c+": a restart by the liveness probe", 3*time.Minute, func() bool {
				return n.jsonpath("pod/p", fmt.Sprintf("{.status.containerStatuses[%d].restartCount}", i)) >= "1"
			})
			n.waitFor(c+": running again", 3*time.Minute, func() bool {
				return n.jsonpath("pod/p", fmt.Sprintf("{.status.containerStatuses[%d].state.running.startedAt}", i)) != ""
			})
			if r := n.jsonpath("pod/p", fmt.Sprintf("{.status.containerStatuses[%d].name}", i)); r != c {
				t.Fatalf("container %d is %s, want %s", i, r, c)
			}
			// The kubelet takes the previous container from the
			// runtime's list once it is listed as exited: under TCG and
			// load that can lag the new container's start a little.
			var prev string
			n.waitFor(c+": the previous container's log", time.Minute, func() bool {
				out, err := n.kErr(nil, "logs", "p", "-c", c, "--previous")
				prev = strings.TrimSpace(out)
				return err == nil
			})
			cur := strings.TrimSpace(n.logsOnce("boot ", "p", "-c", c))
			if !strings.HasPrefix(prev, "boot ") || prev != cur {
				t.Errorf("%s: boot id before the restart %q, after %q: want the same (the same sandbox)", c, prev, cur)
			}
			host := "boot " + readHostFile("/proc/sys/kernel/random/boot_id")
			if (rc == "vc") == (cur == host) {
				t.Errorf("%s: the pod's boot id %q, the host's %q: on %s want them %s", c, cur, host, rc, map[bool]string{true: "different (a VM)", false: "equal"}[rc == "vc"])
			}
		}
		events := n.k("get", "events", "--field-selector", "involvedObject.name=p,reason=Unhealthy", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
		for _, want := range []string{"Liveness probe failed: HTTP probe failed with statuscode: 404", "Liveness probe failed: dial tcp"} {
			if !strings.Contains(events, want) {
				t.Errorf("no Unhealthy event %q among:\n%s", want, events)
			}
		}
	})
}

// TestSysctls: namespaced sysctls of the pod's security context
// (kernel.shm_rmid_forced of the IPC namespace, net.ipv4.ip_unprivileged_port_start
// of the network one) are set for its containers, and the node's are
// left alone; the lowered port start lets a non-root process bind port 80.
func TestSysctls(t *testing.T) {
	t.Parallel()
	hostShm := readHostFile("/proc/sys/kernel/shm_rmid_forced")
	hostPort := readHostFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	forEachClass(t, "sysctl", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  securityContext:
    sysctls:
    - {name: kernel.shm_rmid_forced, value: "1"}
    - {name: net.ipv4.ip_unprivileged_port_start, value: "80"}
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    securityContext: {runAsUser: 1000}
`, image)))
		n.waitReady("p")
		if got := strings.TrimSpace(n.exec("p", "", "cat", "/proc/sys/kernel/shm_rmid_forced", "/proc/sys/net/ipv4/ip_unprivileged_port_start")); got != "1\n80" {
			t.Errorf("sysctls in the container: %q, want 1 and 80", got)
		}
		out, err := n.kErr(nil, "exec", "p", "--", "sh", "-c", "id -u; timeout 2 nc -l -p 80; echo rc=$?")
		if err != nil || !strings.Contains(out, "1000\n") || !strings.Contains(out, "rc=143") {
			// timeout kills the listener (128+15): it had bound.
			t.Errorf("a non-root listener on port 80: %v: %q, want it listening until killed (rc=143)", err, out)
		}
		if h := readHostFile("/proc/sys/kernel/shm_rmid_forced"); h != hostShm {
			t.Errorf("the node's kernel.shm_rmid_forced changed: %s, was %s", h, hostShm)
		}
		if h := readHostFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); h != hostPort {
			t.Errorf("the node's ip_unprivileged_port_start changed: %s, was %s", h, hostPort)
		}
	})
}
