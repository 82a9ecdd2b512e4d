package k8s

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDeploymentService: a Deployment of 3 replicas becomes Ready (a TCP
// readiness probe reaches each pod), scales to 0 (every pod gone) and back
// to 3; a ClusterIP Service, through kube-proxy's rules, reaches the pods
// from the node, before and after the scaling.
func TestDeploymentService(t *testing.T) {
	t.Parallel()
	forEachClass(t, "deploy", func(t *testing.T, n *ns, rc string) {
		n.apply(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      runtimeClassName: %s
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: %s
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && hostname >/www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, rc, image))
		rollout := func() {
			t.Helper()
			if out, err := n.kErr(nil, "rollout", "status", "deployment/web", "--timeout=300s"); err != nil {
				t.Fatalf("rollout: %v: %s\n%s", err, out, n.k("get", "pods", "-o", "wide"))
			}
			if r := n.jsonpath("deployment/web", "{.status.readyReplicas}"); r != "3" {
				t.Fatalf("readyReplicas %q, want 3", r)
			}
		}
		rollout()
		ip := n.jsonpath("service/web", "{.spec.clusterIP}")
		n.serviceReachesPods("http://"+ip+"/", "app=web")

		n.k("scale", "deployment/web", "--replicas=0")
		n.waitFor("no pod left after scaling to 0", 3*time.Minute, func() bool {
			return strings.TrimSpace(n.k("get", "pods", "-l", "app=web", "-o", "name")) == ""
		})
		n.k("scale", "deployment/web", "--replicas=3")
		rollout()
		n.serviceReachesPods("http://"+ip+"/", "app=web")
	})
}

// serviceReachesPods gets url from the node until the answers (each pod
// serves its name) came from at least two of the pods the selector
// names, and from no other.
func (n *ns) serviceReachesPods(url, selector string) {
	n.t.Helper()
	pods := map[string]bool{}
	for _, p := range strings.Fields(n.k("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].metadata.name}")) {
		pods[p] = true
	}
	seen := map[string]bool{}
	cl := &http.Client{Timeout: 5 * time.Second}
	var lastErr error
	deadline := time.Now().Add(2 * time.Minute)
	for len(seen) < 2 && time.Now().Before(deadline) {
		resp, err := cl.Get(url)
		if err != nil {
			// kube-proxy's rules may lag the endpoints by a sync.
			lastErr = err
			time.Sleep(time.Second)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		name := strings.TrimSpace(string(b))
		if !pods[name] {
			n.t.Fatalf("%s answered %q (status %d), not one of the pods %v", url, name, resp.StatusCode, pods)
		}
		seen[name] = true
	}
	if len(seen) < 2 {
		n.t.Fatalf("%s reached %d of the pods %v in 2 minutes (last error: %v)", url, len(seen), pods, lastErr)
	}
}

// TestJob: a Job of 3 completions (2 at a time) completes; a Job whose pod
// fails is retried backoffLimit times, then marked Failed.
func TestJob(t *testing.T) {
	t.Parallel()
	forEachClass(t, "job", func(t *testing.T, n *ns, rc string) {
		n.apply(fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: ok}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      runtimeClassName: %[1]s
      restartPolicy: Never
      containers:
      - {name: c, image: %[2]s, imagePullPolicy: Never, command: ["sh", "-c", "echo done"]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: fails}
spec:
  backoffLimit: 1
  template:
    spec:
      runtimeClassName: %[1]s
      restartPolicy: Never
      containers:
      - {name: c, image: %[2]s, imagePullPolicy: Never, command: ["sh", "-c", "exit 3"]}
`, rc, image))
		if out, err := n.kErr(nil, "wait", "--for=condition=Complete", "job/ok", "--timeout=300s"); err != nil {
			t.Fatalf("job ok: %v: %s\n%s", err, out, n.k("get", "pods", "-o", "wide"))
		}
		if s := n.jsonpath("job/ok", "{.status.succeeded}"); s != "3" {
			t.Errorf("job ok: succeeded %q, want 3", s)
		}
		for _, p := range strings.Fields(n.k("get", "pods", "-l", "job-name=ok", "-o", "jsonpath={.items[*].metadata.name}")) {
			if logs := n.k("logs", p); strings.TrimSpace(logs) != "done" {
				t.Errorf("job ok pod %s logs %q", p, logs)
			}
		}
		if out, err := n.kErr(nil, "wait", "--for=condition=Failed", "job/fails", "--timeout=300s"); err != nil {
			t.Fatalf("job fails: %v: %s\n%s", err, out, n.k("get", "pods", "-o", "wide"))
		}
		if f := n.jsonpath("job/fails", "{.status.failed}"); f != "2" {
			t.Errorf("job fails: failed %q, want 2 (the first run and backoffLimit 1 retry)", f)
		}
		if r := n.jsonpath("job/fails", `{.status.conditions[?(@.type=="Failed")].reason}`); r != "BackoffLimitExceeded" {
			t.Errorf("job fails: Failed reason %q, want BackoffLimitExceeded", r)
		}
		for _, p := range strings.Fields(n.k("get", "pods", "-l", "job-name=fails", "-o", "jsonpath={.items[*].metadata.name}")) {
			if c := n.jsonpath("pod/"+p, "{.status.containerStatuses[0].state.terminated.exitCode}"); c != "3" {
				t.Errorf("job fails pod %s: exit code %q, want 3", p, c)
			}
		}
	})
}
