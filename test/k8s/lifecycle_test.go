package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostDir is a directory of the node for a hostPath volume; the hooks and
// handlers write there, the test reads it on the host.
func hostDir(t *testing.T) string {
	d := t.TempDir()
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

func readHostFile(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// TestHooksAndTermination: the postStart hook runs once the container
// started, the preStop hook before it is stopped; a container that handles
// SIGTERM gets it on delete and exits within the grace period; one that
// ignores it is killed once the grace period is over.
func TestHooksAndTermination(t *testing.T) {
	t.Parallel()
	forEachClass(t, "hooks", func(t *testing.T, n *ns, rc string) {
		dir := hostDir(t)
		vol := fmt.Sprintf(`  volumes:
  - {name: host, hostPath: {path: %s, type: Directory}}
`, dir)
		n.apply(podManifest("hooks", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "exec sleep 3600"]
    volumeMounts: [{name: host, mountPath: /host}]
    lifecycle:
      postStart: {exec: {command: ["sh", "-c", "echo post >/host/post"]}}
      preStop: {exec: {command: ["sh", "-c", "echo pre >/host/pre"]}}
`, image)+vol) + "---\n" +
			podManifest("graceful", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'echo term >/host/term; exit 0' TERM; echo started >/host/started; while :; do sleep 0.2; done"]
    volumeMounts: [{name: host, mountPath: /host}]
`, image)+vol) + "---\n" +
			strings.Replace(podManifest("stubborn", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"]
`, image)), "terminationGracePeriodSeconds: 5", "terminationGracePeriodSeconds: 4", 1))
		for _, p := range []string{"hooks", "graceful", "stubborn"} {
			n.waitReady(p)
		}
		if got := readHostFile(filepath.Join(dir, "post")); got != "post" {
			t.Errorf("postStart hook: /host/post %q, want post", got)
		}
		if got := readHostFile(filepath.Join(dir, "pre")); got != "" {
			t.Errorf("preStop ran before the delete: %q", got)
		}
		n.waitFor("the graceful container's trap set", time.Minute, func() bool { return readHostFile(filepath.Join(dir, "started")) == "started" })

		n.k("delete", "pod", "hooks", "--wait", "--timeout=120s")
		if got := readHostFile(filepath.Join(dir, "pre")); got != "pre" {
			t.Errorf("preStop hook: /host/pre %q, want pre", got)
		}

		t0 := time.Now()
		n.k("delete", "pod", "graceful", "--wait", "--timeout=120s")
		if got := readHostFile(filepath.Join(dir, "term")); got != "term" {
			t.Errorf("SIGTERM handler: /host/term %q, want term", got)
		}
		t.Logf("%s: graceful delete took %.1f s", rc, time.Since(t0).Seconds())

		t0 = time.Now()
		n.k("delete", "pod", "stubborn", "--wait", "--timeout=120s")
		if d := time.Since(t0); d < 4*time.Second || d > 60*time.Second {
			t.Errorf("a container ignoring SIGTERM with a 4 s grace period was gone after %v, want 4 s and a little", d)
		} else {
			t.Logf("%s: a container ignoring SIGTERM (grace 4 s) was gone after %.1f s", rc, d.Seconds())
		}
	})
}

// TestLivenessRestart: a failing exec liveness probe restarts the
// container, in the same pod sandbox (on vc: the same VM, its boot id
// unchanged); kubectl logs --previous shows the run before.
func TestLivenessRestart(t *testing.T) {
	t.Parallel()
	forEachClass(t, "liveness", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo boot $(cat /proc/sys/kernel/random/boot_id); touch /tmp/healthy; sleep 6; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 2
      failureThreshold: 1
`, image)))
		n.waitReady("p")
		n.waitFor("a restart by the liveness probe", 3*time.Minute, func() bool {
			return n.jsonpath("pod/p", "{.status.containerStatuses[0].restartCount}") >= "1"
		})
		n.waitFor("the container running again", 3*time.Minute, func() bool {
			return n.jsonpath("pod/p", "{.status.containerStatuses[0].state.running.startedAt}") != ""
		})
		prev := strings.TrimSpace(n.k("logs", "p", "--previous"))
		// The restarted container's first line may come a while after
		// its start (under TCG): wait for it, as the other log checks do.
		cur := strings.TrimSpace(n.logsOnce("boot ", "p"))
		if !strings.HasPrefix(prev, "boot ") || prev != cur {
			t.Errorf("boot id before the restart %q, after %q: want the same (the same sandbox)", prev, cur)
		}
		host := "boot " + readHostFile("/proc/sys/kernel/random/boot_id")
		if (rc == "vc") == (cur == host) {
			t.Errorf("the pod's boot id %q, the host's %q: on %s want them %s", cur, host, rc, map[bool]string{true: "different (a VM)", false: "equal"}[rc == "vc"])
		}
		if r := n.jsonpath("pod/p", "{.status.containerStatuses[0].lastState.terminated.reason}"); r == "" {
			t.Errorf("no last termination state after the restart")
		}
	})
}

// TestTerminationMessage: what a container writes to its
// terminationMessagePath is its terminated state's message; with
// FallbackToLogsOnError a failing container's last log lines are.
func TestTerminationMessage(t *testing.T) {
	t.Parallel()
	forEachClass(t, "termmsg", func(t *testing.T, n *ns, rc string) {
		n.apply(strings.Replace(podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: file
    image: %[1]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo -n bye from the container >/dev/termination-log"]
  - name: custom
    image: %[1]s
    imagePullPolicy: Never
    terminationMessagePath: /tmp/my-message
    command: ["sh", "-c", "echo -n custom path >/tmp/my-message; exit 2"]
  - name: logs
    image: %[1]s
    imagePullPolicy: Never
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo the last log line; exit 1"]
`, image)), "spec:\n", "spec:\n  restartPolicy: Never\n", 1))
		n.waitFor("every container terminated", 3*time.Minute, func() bool {
			st := n.pod("p")
			done := 0
			for _, c := range st.ContainerStatuses {
				if c.State.Terminated != nil {
					done++
				}
			}
			return done == 3
		})
		want := map[string]struct {
			code int
			msg  string
		}{
			"file":   {0, "bye from the container"},
			"custom": {2, "custom path"},
			"logs":   {1, "the last log line"},
		}
		for _, c := range n.pod("p").ContainerStatuses {
			w := want[c.Name]
			term := c.State.Terminated
			if term.ExitCode != w.code || strings.TrimSpace(term.Message) != w.msg {
				t.Errorf("container %s: exit %d, message %q; want %d, %q", c.Name, term.ExitCode, term.Message, w.code, w.msg)
			}
		}
	})
}
