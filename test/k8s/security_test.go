package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSecurityContext: runAsUser and runAsGroup set the process's ids,
// readOnlyRootFilesystem refuses writes to the root but not to a volume,
// shareProcessNamespace lets a container see the other's processes.
func TestSecurityContext(t *testing.T) {
	forEachClass(t, "security", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  shareProcessNamespace: true
  containers:
  - name: a
    image: %[1]s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    securityContext:
      runAsUser: 1000
      runAsGroup: 3000
      readOnlyRootFilesystem: true
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  - name: b
    image: %[1]s
    imagePullPolicy: Never
    command: ["sleep", "7777"]
  volumes:
  - {name: scratch, emptyDir: {}}
`, image)))
		n.waitReady("p")
		if got := strings.TrimSpace(n.exec("p", "a", "sh", "-c", "id -u; id -g")); got != "1000\n3000" {
			t.Errorf("runAsUser 1000, runAsGroup 3000: id says %q", got)
		}
		if out, err := n.kErr(nil, "exec", "p", "-c", "a", "--", "touch", "/rootfs-write"); err == nil {
			t.Errorf("readOnlyRootFilesystem: touch /rootfs-write succeeded: %s", out)
		} else if !strings.Contains(out, "Read-only file system") {
			t.Errorf("readOnlyRootFilesystem: touch failed without EROFS: %s", out)
		}
		n.exec("p", "a", "touch", "/scratch/ok")
		ps := n.exec("p", "a", "ps", "-o", "pid,args")
		if !strings.Contains(ps, "sleep 7777") {
			t.Errorf("shareProcessNamespace: container a does not see b's `sleep 7777`:\n%s", ps)
		}
	})
}

// TestHostNetwork: a hostNetwork pod runs on runc; on vc it is refused (a
// container in a VM cannot share the node's network namespace) with a pod
// event naming hostNetwork, and nothing of it is left running.
func TestHostNetwork(t *testing.T) {
	forEachClass(t, "hostnet", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  hostNetwork: true
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
`, image)))
		if rc == "runc" {
			n.waitReady("p")
			return
		}
		var events string
		n.waitFor("a pod event naming hostNetwork", 3*time.Minute, func() bool {
			events = n.k("get", "events", "--field-selector", "involvedObject.name=p", "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
			return strings.Contains(events, "hostNetwork")
		})
		t.Logf("events:\n%s", events)
		if ph := n.jsonpath("pod/p", "{.status.phase}"); ph != "Pending" {
			t.Errorf("phase %q, want Pending", ph)
		}
	})
}
