package containerd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// podSysctls are a pod's sysctls, safe and unsafe, of the IPC and network
// namespaces, each set to a value that is not the kernel's default.
var podSysctls = map[string]string{
	"kernel.shm_rmid_forced":              "1",     // safe, ipc
	"net.ipv4.ip_unprivileged_port_start": "81",    // safe, net
	"kernel.msgmax":                       "12345", // unsafe, ipc
	"net.core.somaxconn":                  "1234",  // unsafe, net
}

// checkPodNamespaces runs a pod of two containers with handler and checks
// what the kubelet expects of a pod: loopback up, one container reaching
// the other's server on 127.0.0.1, the IPC and UTS namespaces shared
// (same namespace, same hostname) and the pod's sysctls visible in every
// container.
func checkPodNamespaces(t *testing.T, c *containerd.Containerd, cri *containerd.CRIClient, handler string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pcfg := c.PodConfig("nspod", "nspod-uid")
	pcfg.Linux.Sysctls = podSysctls
	pod, err := cri.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cri.Runtime.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		cri.Runtime.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	})
	start := func(name string, args ...string) string {
		r, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId, Config: containerd.ContainerConfig(name, images.BusyboxRef, args...), SandboxConfig: pcfg,
		})
		if err != nil {
			t.Fatalf("CreateContainer %s: %v", name, err)
		}
		if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId}); err != nil {
			t.Fatalf("StartContainer %s: %v", name, err)
		}
		return r.ContainerId
	}
	// A server on the loopback address only.
	web := start("web", "sh", "-c", "mkdir -p /www && echo hello-over-lo > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www")
	client := start("client", "sleep", "1000")

	out := func(id string, cmd ...string) string {
		t.Helper()
		r := execSync(t, cri, id, cmd...)
		if r.ExitCode != 0 {
			t.Errorf("%s in %s: exit %d: %s%s", cmd, id[:12], r.ExitCode, r.Stdout, r.Stderr)
		}
		return strings.TrimSpace(string(r.Stdout))
	}
	if got := out(client, "cat", "/sys/class/net/lo/operstate"); got != "unknown" && got != "up" {
		t.Errorf("lo is %q in the pod, want it up", got)
	}
	// httpd may still be starting: a few tries.
	var page, stderr string
	for i := 0; i < 20; i++ {
		r := execSync(t, cri, client, "wget", "-qO-", "http://127.0.0.1:8080/")
		page, stderr = strings.TrimSpace(string(r.Stdout)), string(r.Stderr)
		if r.ExitCode == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if page != "hello-over-lo" {
		t.Errorf("the client container fetched %q (%s) over loopback from the web container, want hello-over-lo", page, stderr)
	}
	for _, ns := range []string{"ipc", "uts"} {
		a, b := out(web, "readlink", "/proc/self/ns/"+ns), out(client, "readlink", "/proc/self/ns/"+ns)
		if a == "" || a != b {
			t.Errorf("%s namespaces of the pod's containers: %q and %q, want one", ns, a, b)
		}
	}
	for _, id := range []string{web, client} {
		if h := out(id, "hostname"); h != pcfg.Hostname {
			t.Errorf("hostname in %s: %q, want the pod's %q", id[:12], h, pcfg.Hostname)
		}
		for k, want := range podSysctls {
			if got := out(id, "cat", "/proc/sys/"+strings.ReplaceAll(k, ".", "/")); got != want {
				t.Errorf("sysctl %s in %s: %q, want the pod's %q", k, id[:12], got, want)
			}
		}
	}
}

// TestRuncCRIPodNamespaces proves checkPodNamespaces with runc.
func TestRuncCRIPodNamespaces(t *testing.T) {
	c := containerd.StartContainerd(t, containerd.Options{})
	c.ImportImages(t)
	checkPodNamespaces(t, c, c.CRI(t), containerd.RuncHandler)
}

// TestVCCRIPodNamespaces: the same with vc, where the pod is a VM.
func TestVCCRIPodNamespaces(t *testing.T) {
	d := startVC(t, "")
	checkPodNamespaces(t, d.Containerd, d.CRI(t), containerd.VCHandler)
}

// TestVCCRIHostNamespaces: a pod asking for the host's network, IPC or
// PID namespace cannot be honoured by a VM; RunPodSandbox fails naming
// the field and leaves no shim, VM or state.
func TestVCCRIHostNamespaces(t *testing.T) {
	d := startVC(t, "")
	cri := d.CRI(t)
	for _, tc := range []struct {
		field string
		set   func(*runtimeapi.NamespaceOption)
	}{
		{"hostNetwork", func(o *runtimeapi.NamespaceOption) { o.Network = runtimeapi.NamespaceMode_NODE }},
		{"hostIPC", func(o *runtimeapi.NamespaceOption) { o.Ipc = runtimeapi.NamespaceMode_NODE }},
		{"hostPID", func(o *runtimeapi.NamespaceOption) { o.Pid = runtimeapi.NamespaceMode_NODE }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			name := strings.ToLower(tc.field)
			pcfg := d.PodConfig(name, name+"-uid")
			tc.set(pcfg.Linux.SecurityContext.NamespaceOptions)
			pod, err := cri.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pcfg, RuntimeHandler: containerd.VCHandler})
			if err == nil {
				cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
				t.Fatalf("RunPodSandbox with %s succeeded, want it refused", tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("RunPodSandbox with %s: %v; want the error to name %s", tc.field, err, tc.field)
			}
			d.waitNoShims(t)
			if left := leftovers(d.stateRoot); left != "" {
				t.Errorf("left behind: %s", left)
			}
		})
	}
}
