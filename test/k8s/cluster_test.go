// Package k8s runs a real single-node Kubernetes cluster (hack/kube-up.sh:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
// kube-proxy v1.37 on the project's containerd) and drives it with
// kubectl. Every case runs with RuntimeClass vc (each pod in a VM) and
// with runc, whose twin proves the harness: the same manifest, the same
// assertion, unless the behaviour differs on purpose (then both sides are
// asserted). Needs root and `make test`'s set-up (hack/install-kube.sh,
// hack/install-containerd.sh); a cluster that cannot start fails the test.
package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/flock"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

// Image is the busybox test image kube-up.sh imports (never pulled).
const image = "docker.io/library/busybox:vc-test"

// runtimeClasses are the classes every case runs with.
var runtimeClasses = []string{"vc", "runc"}

// cluster is the running cluster, started by the first test that needs it
// and stopped by TestMain.
type cluster struct {
	kubectlBin string
	kubeconfig string
	vmState    string // the vc shim's state root
	ctrdSock   string
	dir        string // the cluster's directory (hack/kube-env.sh's KUBE_DIR)
	// The guest image the vc shim boots.
	kernel, initrd string
}

var (
	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
	started     bool
)

func TestMain(m *testing.M) {
	// One cluster a host: its paths, ports and bridge are fixed. A second
	// run (another worktree's) waits here instead of tearing this one down.
	release, err := flock.Lock("/run/vc-kube.lock", true)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lock /run/vc-kube.lock: %v\n", err)
		os.Exit(1)
	}
	// The cases spend most of their time waiting on the kubelet (sync
	// periods, probes, grace periods, a CronJob's minute): two cases (each
	// with its two runtime classes) run side by side unless -parallel says
	// otherwise. TestDensity, which counts the node's QEMU processes, is
	// not parallel: it runs before the others start.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "4")
	}
	code := m.Run()
	if started {
		out, err := exec.Command(script("kube-down.sh")).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "kube-down: %v\n%s", err, out)
			code = 1
		}
		if left := hostLeftovers(); left != "" {
			fmt.Fprintf(os.Stderr, "left on the host after kube-down: %s\n", left)
			code = 1
		}
	}
	release()
	os.Exit(code)
}

// hostLeftovers describes what of the cluster kube-down left on the host:
// its directories, mounts, the CNI bridge, KUBE-* iptables chains, log
// links.
func hostLeftovers() string {
	var out []string
	for _, d := range []string{envOr("VC_KUBE_DIR", "/var/lib/vc-kube"), envOr("VC_KUBE_RUN", "/run/vc-kube")} {
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+d+"/") {
			out = append(out, "mounts under "+d)
		}
	}
	if _, err := os.Stat("/sys/class/net/vckube0"); err == nil {
		out = append(out, "link vckube0")
	}
	for _, ipt := range []string{"iptables-save", "ip6tables-save"} {
		if b, err := exec.Command(ipt).Output(); err == nil && strings.Contains(string(b), "KUBE-") {
			out = append(out, ipt+" has KUBE-* chains")
		}
	}
	if links, _ := filepath.Glob("/var/log/containers/*"); len(links) > 0 {
		out = append(out, fmt.Sprintf("%d links in /var/log/containers", len(links)))
	}
	return strings.Join(out, ", ")
}

func script(name string) string {
	return filepath.Join(testutil.RepoRoot(), "hack", name)
}

// env is what hack/kube-env.sh would say, for the paths the tests look at.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// startCluster builds the shim and the guest image for the agent under
// test, then runs hack/kube-up.sh.
func startCluster() (*cluster, error) {
	agent := os.Getenv("VC_AGENT_BIN")
	if agent == "" {
		var err error
		agent, err = testutil.Build("vc-agent", "./cmd/vc-agent", []string{"CGO_ENABLED=1"},
			"-tags", "seccomp netgo osusergo", "-ldflags", `-extldflags "-static"`)
		if err != nil {
			return nil, fmt.Errorf("build vc-agent: %w", err)
		}
	}
	shim, err := testutil.Build("containerd-shim-vc-v2", "./cmd/containerd-shim-vc-v2", []string{"CGO_ENABLED=0"}, "-tags", "grpcnotrace")
	if err != nil {
		return nil, fmt.Errorf("build containerd-shim-vc-v2: %w", err)
	}
	dataRoot := envOr("VC_TEST_DATA_ROOT", "/var/lib/vc-test")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	img, err := guestimage.Build(ctx, guestimage.Options{Agent: agent, Root: filepath.Join(dataRoot, "images")})
	if err != nil {
		return nil, fmt.Errorf("guest image: %w", err)
	}
	// make test builds Kubernetes in the background (kube-bin-bg): the
	// script waits for that build under its lock, or finds the cache.
	t1 := time.Now()
	if out, err := exec.Command(script("install-kube.sh")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hack/install-kube.sh: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "kubernetes binaries ready in %.1f s\n", time.Since(t1).Seconds())
	cmd := exec.Command(script("kube-up.sh"))
	cmd.Env = append(os.Environ(),
		"VC_KUBE_SHIM_DIR="+filepath.Dir(shim),
		"VC_DATA_ROOT="+dataRoot,
		"VC_KUBE_KERNEL="+img.Kernel,
		"VC_KUBE_INITRD="+img.Initrd,
		"VC_KUBE_ACCEL=tcg")
	started = true
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("hack/kube-up.sh: %w\n%s%s", err, out, logTails())
	}
	fmt.Fprintf(os.Stderr, "cluster up in %.1f s\n", time.Since(t0).Seconds())
	dir := envOr("VC_KUBE_DIR", "/var/lib/vc-kube")
	run := envOr("VC_KUBE_RUN", "/run/vc-kube")
	bin := envOr("VC_KUBE_BIN", "/var/cache/vc/kube/"+envOr("KUBE_VERSION", "v1.37.2")+"/bin")
	return &cluster{
		kubectlBin: filepath.Join(bin, "kubectl"),
		kubeconfig: filepath.Join(dir, "admin.kubeconfig"),
		vmState:    filepath.Join(run, "vm"),
		ctrdSock:   filepath.Join(run, "containerd.sock"),
		dir:        dir,
		kernel:     img.Kernel,
		initrd:     img.Initrd,
	}, nil
}

// logTails is the end of each daemon's log kube-up.sh kept.
func logTails() string {
	dir := filepath.Join(envOr("VC_KUBE_DIR", "/var/lib/vc-kube"), "log")
	ents, _ := os.ReadDir(dir)
	var b strings.Builder
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- %s (last lines)\n%s", e.Name(), strings.Join(lines, "\n"))
	}
	return b.String()
}

// getCluster fails the test unless the cluster runs (starting it once).
func getCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "skipped: needs root (a kubelet, containerd, mounts, network namespaces); run as root or with `make test`")
	}
	clusterOnce.Do(func() { theCluster, clusterErr = startCluster() })
	if clusterErr != nil {
		t.Fatalf("the cluster did not start: %v", clusterErr)
	}
	return theCluster
}

// ns is a namespace of one test, deleted (with its pods) at its end.
type ns struct {
	c    *cluster
	t    *testing.T
	name string
}

// newNS makes a namespace for the test and waits for its default service
// account (pods are refused before it exists).
func newNS(t *testing.T, name string) *ns {
	t.Helper()
	c := getCluster(t)
	n := &ns{c: c, t: t, name: name}
	c.kubectl(t, "create", "namespace", name)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.kubectlErr(context.Background(), nil, "-n", name, "get", "events", "--sort-by=.lastTimestamp")
			t.Logf("events in %s:\n%s", name, out)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := c.kubectlErr(ctx, nil, "delete", "namespace", name, "--ignore-not-found", "--wait", "--timeout=170s"); err != nil {
			t.Errorf("delete namespace %s: %v: %s", name, err, out)
		}
	})
	n.waitFor("default service account", time.Minute, func() bool {
		_, err := c.kubectlErr(context.Background(), nil, "-n", name, "get", "serviceaccount", "default")
		return err == nil
	})
	return n
}

func (c *cluster) command(ctx context.Context, stdin []byte, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.kubectlBin, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd
}

// kubectlErr runs kubectl, returning its stdout (stderr too when it fails).
func (c *cluster) kubectlErr(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := c.command(ctx, stdin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := c.kubectlErr(ctx, nil, args...)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return out
}

// k runs kubectl in the namespace and fails the test when it fails.
func (n *ns) k(args ...string) string {
	n.t.Helper()
	return n.c.kubectl(n.t, append([]string{"-n", n.name}, args...)...)
}

// kErr runs kubectl in the namespace with stdin (may be nil).
func (n *ns) kErr(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return n.c.kubectlErr(ctx, stdin, append([]string{"-n", n.name}, args...)...)
}

// apply creates the objects of a manifest in the namespace.
func (n *ns) apply(manifest string) {
	n.t.Helper()
	if out, err := n.kErr([]byte(manifest), "apply", "-f", "-"); err != nil {
		n.t.Fatalf("%v: %s\nmanifest:\n%s", err, out, manifest)
	}
}

// exec runs a command in a pod's container and returns its stdout.
func (n *ns) exec(pod, container string, args ...string) string {
	n.t.Helper()
	a := []string{"exec", pod}
	if container != "" {
		a = append(a, "-c", container)
	}
	return n.k(append(append(a, "--"), args...)...)
}

// waitFor polls cond until it holds, failing the test after d.
func (n *ns) waitFor(what string, d time.Duration, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(time.Second)
	}
}

// logsOnce waits at most a minute for a container's log to hold want
// (Ready means the container started, not that it wrote: in a VM under
// TCG its first line may come a second or more later) and returns it.
func (n *ns) logsOnce(want string, args ...string) string {
	n.t.Helper()
	var logs string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		if logs = n.k(append([]string{"logs"}, args...)...); strings.Contains(logs, want) || time.Now().After(deadline) {
			return logs
		}
	}
}

// podTimeout bounds a pod's start: a VM boots in 2-5 s under TCG, slower
// when the machine is busy.
const podTimeout = "180s"

// waitReady waits until the pod is Ready.
func (n *ns) waitReady(pod string) {
	n.t.Helper()
	if out, err := n.kErr(nil, "wait", "--for=condition=Ready", "pod/"+pod, "--timeout="+podTimeout); err != nil {
		n.t.Fatalf("pod %s not Ready: %v: %s\n%s", pod, err, out, n.describe(pod))
	}
}

// describe is kubectl describe pod, for failure messages.
func (n *ns) describe(pod string) string {
	out, _ := n.kErr(nil, "describe", "pod", pod)
	return out
}

// jsonpath reads a field of an object.
func (n *ns) jsonpath(obj, path string) string {
	n.t.Helper()
	return n.k("get", obj, "-o", "jsonpath="+path)
}

// podJSON decodes a pod's status.
func (n *ns) pod(name string) podStatus {
	n.t.Helper()
	var p struct {
		Status podStatus `json:"status"`
	}
	if err := json.Unmarshal([]byte(n.k("get", "pod", name, "-o", "json")), &p); err != nil {
		n.t.Fatal(err)
	}
	return p.Status
}

type containerState struct {
	Running *struct{} `json:"running"`
	Waiting *struct {
		Reason string `json:"reason"`
	} `json:"waiting"`
	Terminated *struct {
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
		Message  string `json:"message"`
	} `json:"terminated"`
}

type podStatus struct {
	Phase             string `json:"phase"`
	ContainerStatuses []struct {
		Name         string         `json:"name"`
		RestartCount int            `json:"restartCount"`
		State        containerState `json:"state"`
		LastState    containerState `json:"lastTerminationState"`
	} `json:"containerStatuses"`
}

// podManifest is a pod of busybox containers with the runtime class;
// spec is YAML indented by two spaces below `spec:` (containers and the
// rest), with %[1]s standing for the runtime class where it matters.
func podManifest(name, rc, spec string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  runtimeClassName: %s
  terminationGracePeriodSeconds: 5
%s`, name, rc, spec)
}

// forEachClass runs f as a subtest per runtime class, in a namespace of
// its own each; the two run side by side.
func forEachClass(t *testing.T, prefix string, f func(t *testing.T, n *ns, rc string)) {
	for _, rc := range runtimeClasses {
		t.Run(rc, func(t *testing.T) {
			t.Parallel()
			n := newNS(t, prefix+"-"+rc)
			f(t, n, rc)
		})
	}
}
