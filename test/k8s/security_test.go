package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSecurityContext: runAsUser and runAsGroup set the process's ids,
// fsGroup is a supplementary group that owns the volume,
// readOnlyRootFilesystem refuses writes to the root but not to a volume,
// shareProcessNamespace lets a container see the other's processes;
// capabilities (drop ALL, add NET_ADMIN), allowPrivilegeEscalation false
// and seccomp RuntimeDefault are what the process runs with.
func TestSecurityContext(t *testing.T) {
	t.Parallel()
	forEachClass(t, "security", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  shareProcessNamespace: true
  securityContext: {fsGroup: 4000}
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
  - name: caps
    image: %[1]s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    securityContext:
      capabilities: {drop: [ALL], add: [NET_ADMIN]}
      allowPrivilegeEscalation: false
      seccompProfile: {type: RuntimeDefault}
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
		if got := strings.Fields(n.exec("p", "a", "sh", "-c", "id -G; stat -c %g /scratch")); len(got) < 2 || got[len(got)-1] != "4000" || !strings.Contains(strings.Join(got[:len(got)-1], " "), "4000") {
			t.Errorf("fsGroup 4000: groups and the volume's group %q", got)
		}
		status := n.exec("p", "caps", "cat", "/proc/self/status")
		for _, want := range []string{"CapEff:\t0000000000001000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(status, want) {
				t.Errorf("capabilities, no_new_privs, seccomp: /proc/self/status lacks %q:\n%s", want, status)
			}
		}
		ps := n.exec("p", "a", "ps", "-o", "pid,args")
		if !strings.Contains(ps, "sleep 7777") {
			t.Errorf("shareProcessNamespace: container a does not see b's `sleep 7777`:\n%s", ps)
		}
	})
}

// TestHostNamespaces: pods with hostNetwork, hostPID or hostIPC run on
// runc; on vc each is refused (a container in a VM cannot share the
// node's namespaces) with a pod event naming the field, before any VM
// boots.
func TestHostNamespaces(t *testing.T) {
	t.Parallel()
	fields := []string{"hostNetwork", "hostPID", "hostIPC"}
	forEachClass(t, "hostns", func(t *testing.T, n *ns, rc string) {
		for _, f := range fields {
			n.apply(podManifest(strings.ToLower(f), rc, fmt.Sprintf(`  %s: true
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
`, f, image)))
		}
		for _, f := range fields {
			pod := strings.ToLower(f)
			if rc == "runc" {
				n.waitReady(pod)
				continue
			}
			var events string
			n.waitFor("a pod event naming "+f, 3*time.Minute, func() bool {
				events = n.k("get", "events", "--field-selector", "involvedObject.name="+pod, "-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
				return strings.Contains(events, "("+f+")")
			})
			t.Logf("%s events:\n%s", f, events)
			if ph := n.jsonpath("pod/"+pod, "{.status.phase}"); ph != "Pending" {
				t.Errorf("%s: phase %q, want Pending", f, ph)
			}
		}
	})
}
