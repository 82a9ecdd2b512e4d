package k8s

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestConfigMapSecretEmptyDir: a ConfigMap and a Secret reach a pod as
// files and as environment variables; updates of both reach the running
// pod's files within the kubelet's sync period (10 s here) plus its cache;
// one emptyDir is shared by the pod's two containers, both ways.
func TestConfigMapSecretEmptyDir(t *testing.T) {
	t.Parallel()
	forEachClass(t, "volumes", func(t *testing.T, n *ns, rc string) {
		n.apply(`apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {greeting: hello, other: x}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: s3cret}
---
` + podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: a
    image: %[1]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo written-by-a >/shared/from-a; exec sleep 3600"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cm, key: greeting}}}
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: sec, key: password}}}
    volumeMounts:
    - {name: cm, mountPath: /etc/cm}
    - {name: sec, mountPath: /etc/sec}
    - {name: shared, mountPath: /shared}
  - name: b
    image: %[1]s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: shared, mountPath: /data}
  volumes:
  - {name: cm, configMap: {name: cm}}
  - {name: sec, secret: {secretName: sec}}
  - {name: shared, emptyDir: {}}
`, image)))
		n.waitReady("p")
		if got := n.exec("p", "a", "sh", "-c", `echo "$GREETING $PASSWORD"`); strings.TrimSpace(got) != "hello s3cret" {
			t.Errorf("env GREETING PASSWORD: %q, want \"hello s3cret\"", got)
		}
		if got := n.exec("p", "a", "cat", "/etc/cm/greeting", "/etc/cm/other", "/etc/sec/password"); got != "hellox"+"s3cret" {
			t.Errorf("config map and secret files: %q, want %q", got, "hellox"+"s3cret")
		}
		// The emptyDir, from a to b and back.
		if got := n.exec("p", "b", "cat", "/data/from-a"); strings.TrimSpace(got) != "written-by-a" {
			t.Errorf("b reads a's file in the emptyDir: %q", got)
		}
		n.exec("p", "b", "sh", "-c", "echo written-by-b >/data/from-b")
		if got := n.exec("p", "a", "cat", "/shared/from-b"); strings.TrimSpace(got) != "written-by-b" {
			t.Errorf("a reads b's file in the emptyDir: %q", got)
		}

		t0 := time.Now()
		n.k("patch", "configmap", "cm", "-p", `{"data":{"greeting":"updated"}}`)
		n.k("patch", "secret", "sec", "-p", `{"stringData":{"password":"rotated"}}`)
		n.waitFor("the updated config map and secret in the pod's files", 3*time.Minute, func() bool {
			out, err := n.kErr(nil, "exec", "p", "-c", "a", "--", "cat", "/etc/cm/greeting", "/etc/sec/password")
			return err == nil && out == "updated"+"rotated"
		})
		t.Logf("%s: config map and secret updates seen in the pod after %.1f s", rc, time.Since(t0).Seconds())
	})
}
