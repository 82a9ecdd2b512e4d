package k8s

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInitSidecarDownwardAPI: an init container runs to completion before
// the pod's container, whose volume it filled; a native sidecar (an init
// container with restartPolicy Always) keeps running beside it; the
// downward API gives the pod's name and IP as environment and its labels
// as a file that follows a label change; the projected service-account
// token is there.
func TestInitSidecarDownwardAPI(t *testing.T) {
	t.Parallel()
	forEachClass(t, "init", func(t *testing.T, n *ns, rc string) {
		m := podManifest("p", rc, fmt.Sprintf(`  initContainers:
  - name: init
    image: %[1]s
    imagePullPolicy: Never
    command: ["sh", "-c", "echo from-init >/work/init"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: sidecar
    image: %[1]s
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", "while :; do echo alive >/work/sidecar; sleep 1; done"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: %[1]s
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /work/init; exec sleep 3600"]
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: info, mountPath: /etc/podinfo}
  volumes:
  - {name: work, emptyDir: {}}
  - name: info
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
`, image))
		n.apply(strings.Replace(m, "metadata:\n  name: p\n", "metadata:\n  name: p\n  labels: {tier: one}\n", 1))
		n.waitReady("p")
		if logs := strings.TrimSpace(n.logsOnce("from-init", "p", "-c", "main")); logs != "from-init" {
			t.Errorf("main's log %q, want from-init (the init container's file)", logs)
		}
		if st := n.jsonpath("pod/p", `{.status.initContainerStatuses[?(@.name=="sidecar")].started}`); st != "true" {
			t.Errorf("sidecar started %q, want true", st)
		}
		n.exec("p", "main", "sh", "-c", "rm /work/sidecar")
		n.waitFor("the sidecar writing again", time.Minute, func() bool {
			out, err := n.kErr(nil, "exec", "p", "-c", "main", "--", "cat", "/work/sidecar")
			return err == nil && strings.TrimSpace(out) == "alive"
		})
		ip := n.jsonpath("pod/p", "{.status.podIP}")
		if got := strings.TrimSpace(n.exec("p", "main", "sh", "-c", `echo "$POD_NAME $POD_IP"`)); got != "p "+ip {
			t.Errorf("downward API env: %q, want %q", got, "p "+ip)
		}
		if got := n.exec("p", "main", "cat", "/etc/podinfo/labels"); !strings.Contains(got, `tier="one"`) {
			t.Errorf("downward API labels file: %q", got)
		}
		n.k("label", "pod", "p", "tier=two", "--overwrite")
		n.waitFor("the relabelled pod's labels file", 3*time.Minute, func() bool {
			out, err := n.kErr(nil, "exec", "p", "-c", "main", "--", "cat", "/etc/podinfo/labels")
			return err == nil && strings.Contains(out, `tier="two"`)
		})
		tok := n.exec("p", "main", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token")
		if len(strings.Split(tok, ".")) != 3 {
			t.Errorf("service-account token %q is not a JWT", tok)
		}
	})
}

// TestProbesCopyPortForward: a startup probe (tcpSocket) and a readiness
// probe (httpGet) gate the pod's Ready condition until the server answers
// the readiness path; kubectl cp copies a file in and out; kubectl
// port-forward reaches the pod's server from the node's loopback.
func TestProbesCopyPortForward(t *testing.T) {
	t.Parallel()
	forEachClass(t, "probes", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: web
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello-%s >/www/index.html && exec httpd -f -p 8080 -h /www"]
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 60}
    readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
`, image, rc)))
		n.waitFor("the container started (startup probe passed)", 3*time.Minute, func() bool {
			return n.jsonpath("pod/p", "{.status.containerStatuses[0].started}") == "true"
		})
		time.Sleep(3 * time.Second)
		if r := n.jsonpath("pod/p", `{.status.conditions[?(@.type=="Ready")].status}`); r != "False" {
			t.Errorf("Ready %q while /ready is missing, want False", r)
		}
		n.exec("p", "", "touch", "/www/ready")
		n.waitReady("p")

		// kubectl cp both ways (through the container's tar).
		dir := t.TempDir()
		src := filepath.Join(dir, "in.txt")
		if err := os.WriteFile(src, []byte("copied in\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		n.k("cp", src, "p:/tmp/in.txt")
		if got := n.exec("p", "", "cat", "/tmp/in.txt"); got != "copied in\n" {
			t.Errorf("cp in: %q", got)
		}
		n.k("cp", "p:/www/index.html", filepath.Join(dir, "out.html"))
		if got := readHostFile(filepath.Join(dir, "out.html")); got != "hello-"+rc {
			t.Errorf("cp out: %q", got)
		}

		// port-forward on a free local port.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := n.c.command(ctx, nil, "-n", n.name, "port-forward", "pod/p", ":8080")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); cmd.Wait() }()
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
		sc := bufio.NewScanner(out)
		port := ""
		for port == "" && sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port = m[1]
			}
		}
		if port == "" {
			t.Fatalf("kubectl port-forward said no local port")
		}
		go io.Copy(io.Discard, out)
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get("http://127.0.0.1:" + port + "/")
		if err != nil {
			t.Fatalf("through port-forward: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) != "hello-"+rc {
			t.Errorf("through port-forward: %q", b)
		}
	})
}
