package containerd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
)

// TestVCCRIPodNetwork: a vc pod on the CNI bridge network. The VM joins
// the pod's network namespace (the shim passes the CRI sandbox spec's
// network namespace path): a server in the container in the VM answers
// HTTP from the host on the pod IP CNI gave; the guest has CNI's default
// route; once the pod is removed the address no longer answers.
func TestVCCRIPodNetwork(t *testing.T) {
	d := startVC(t, "")
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const body = "hello-from-a-vc-pod"
	_, podID, c1 := runPod(t, d.Containerd, cri, containerd.VCHandler, "vc-net-pod", "sh", "-c",
		fmt.Sprintf("mkdir -p /www && echo %s > /www/index.html && exec httpd -f -vv -p 8080 -h /www 2>&1", body))
	st, err := cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(st.GetStatus().GetNetwork().GetIp())
	_, subnet, _ := net.ParseCIDR(containerd.CNISubnet)
	if ip == nil || !subnet.Contains(ip) {
		t.Fatalf("pod IP %q, want one in %s", st.GetStatus().GetNetwork().GetIp(), containerd.CNISubnet)
	}
	if r := execSync(t, cri, c1, "ip", "-4", "addr", "show", "eth0"); !strings.Contains(string(r.Stdout), ip.String()+"/") {
		t.Errorf("eth0 in the guest lacks the pod IP %s:\n%s%s", ip, r.Stdout, r.Stderr)
	}

	url := fmt.Sprintf("http://%s/", net.JoinHostPort(ip.String(), "8080"))
	client := &http.Client{Timeout: 5 * time.Second}
	var got string
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got = string(b)
		break
	}
	if strings.TrimSpace(got) != body {
		t.Fatalf("GET %s from the host: %q (last error %v), want %q", url, got, lastErr, body)
	}
	// Routes: the default route CNI set goes through the guest's eth0.
	if r := execSync(t, cri, c1, "ip", "route"); !strings.Contains(string(r.Stdout), "default via "+containerd.CNIGateway+" dev eth0") {
		t.Errorf("guest routes lack the pod's default route via %s:\n%s", containerd.CNIGateway, r.Stdout)
	}

	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if _, err := client.Get(url); err == nil {
		t.Errorf("GET %s answered after the pod was removed", url)
	}
}
