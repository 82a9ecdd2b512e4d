package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestVolumeItemsSubPathMemory: a ConfigMap's items land under the paths
// they name; a subPath mount of one key is a file that does not follow an
// update (as the kubelet documents) while the volume does; an emptyDir of
// medium Memory with a sizeLimit refuses a write past the limit.
func TestVolumeItemsSubPathMemory(t *testing.T) {
	t.Parallel()
	forEachClass(t, "subpath", func(t *testing.T, n *ns, rc string) {
		n.apply(`apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {a: one, b: two}
---
` + podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: items, mountPath: /etc/items}
    - {name: whole, mountPath: /etc/app/a.conf, subPath: a}
    - {name: mem, mountPath: /mem}
  volumes:
  - name: items
    configMap: {name: cm, items: [{key: b, path: sub/dir/b.txt}]}
  - name: whole
    configMap: {name: cm}
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 8Mi}
`, image)))
		n.waitReady("p")
		if got := n.exec("p", "", "cat", "/etc/items/sub/dir/b.txt"); got != "two" {
			t.Errorf("items: sub/dir/b.txt %q, want two", got)
		}
		if out, err := n.kErr(nil, "exec", "p", "--", "ls", "/etc/items/a"); err == nil {
			t.Errorf("items: key a is there though not listed: %s", out)
		}
		if got := n.exec("p", "", "cat", "/etc/app/a.conf"); got != "one" {
			t.Errorf("subPath: /etc/app/a.conf %q, want one", got)
		}
		// A write past the memory emptyDir's size limit fails.
		out, err := n.kErr(nil, "exec", "p", "--", "sh", "-c", "dd if=/dev/zero of=/mem/big bs=1M count=16 2>&1")
		if err == nil || !strings.Contains(out, "No space left on device") {
			t.Errorf("16 MiB into a medium: Memory emptyDir of sizeLimit 8Mi: err %v, output %q; want ENOSPC", err, out)
		}
		// On vc the limit holds (the tmpfs is the host's, shared into the
		// VM over 9p) but statfs in the guest reports the share's
		// filesystem, not the tmpfs: df does not show the 8 MiB
		// (docs/kubernetes.md, not done yet).
		if got := strings.TrimSpace(n.exec("p", "", "sh", "-c", "df -k /mem | tail -1 | awk '{print $2}'")); rc == "runc" && got != "8192" {
			t.Errorf("the memory emptyDir's size: %s KiB, want 8192", got)
		} else if rc == "vc" {
			t.Logf("vc: df says the memory emptyDir has %s KiB (the 9p share's statfs, not the 8 MiB tmpfs)", got)
		}

		// The update reaches the items volume, not the subPath file.
		n.k("patch", "configmap", "cm", "-p", `{"data":{"a":"uno","b":"dos"}}`)
		n.waitFor("the update in the items volume", 3*time.Minute, func() bool {
			out, err := n.kErr(nil, "exec", "p", "--", "cat", "/etc/items/sub/dir/b.txt")
			return err == nil && out == "dos"
		})
		if got := n.exec("p", "", "cat", "/etc/app/a.conf"); got != "one" {
			t.Errorf("subPath file after the update: %q, want the old one", got)
		}
	})
}

// TestCronJobLogsFollow: a CronJob fires within its minute and its Job
// completes; kubectl logs -f follows a container's output until it exits.
func TestCronJobLogsFollow(t *testing.T) {
	t.Parallel()
	forEachClass(t, "cron", func(t *testing.T, n *ns, rc string) {
		n.apply(fmt.Sprintf(`apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          runtimeClassName: %[1]s
          restartPolicy: Never
          containers:
          - {name: c, image: %[2]s, imagePullPolicy: Never, command: ["echo", "tick"]}
---
`, rc, image) + podManifest("talker", rc, fmt.Sprintf(`  restartPolicy: Never
  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 3; for i in 1 2 3; do echo line $i; sleep 1; done"]
`, image)))
		n.waitFor("talker running", 3*time.Minute, func() bool {
			return n.jsonpath("pod/talker", "{.status.containerStatuses[0].state.running.startedAt}") != ""
		})
		if out := n.k("logs", "-f", "talker"); out != "line 1\nline 2\nline 3\n" {
			t.Errorf("logs -f: %q, want the three lines", out)
		}
		n.waitFor("a job of the CronJob completed", 4*time.Minute, func() bool {
			return strings.Contains(n.k("get", "jobs", "-o", `jsonpath={range .items[*]}{.status.succeeded}{" "}{end}`), "1")
		})
		if last := n.jsonpath("cronjob/tick", "{.status.lastSuccessfulTime}"); last == "" {
			t.Errorf("the CronJob has no lastSuccessfulTime")
		}
	})
}
