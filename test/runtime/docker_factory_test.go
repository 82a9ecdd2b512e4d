package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

// TestDockerFactory: docker run --runtime vc-factory (vc-runtime with
// runtimeArgs --factory DIR in daemon.json): the container's VM resumes
// the template (without the NAT NIC: the namespace docker's hook fills
// is hotplugged into it), has docker's hostname and its bridge address
// on eth0, serves HTTP at that address to the daemon's namespace, and rm
// -f leaves nothing.
func TestDockerFactory(t *testing.T) {
	docker(t, "version") // starts the daemon, or skips
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := dockerD.factoryDir()
	netnsFactory(ctx, t, dir)

	const name = "vc-docker-factory"
	t.Cleanup(func() {
		docker(t, "rm", "-f", name)
		dockerNoneLeft(t)
	})
	begin := time.Now()
	out, errOut, code := dockerRun(t, dockerFactoryRuntime, []string{"-d", "--name", name},
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www")
	if code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", code, errOut)
	}
	t.Logf("docker run -d from the template: %s", time.Since(begin).Round(time.Millisecond))
	cid := strings.TrimSpace(out)
	// Docker 20.10 gives every runtime the root exec/runtime-runc/moby;
	// vc-runtime's directory there is named by the id cut short.
	cdir := containerDirOf(t, filepath.Join(dockerD.dir, "exec", "runtime-*", "*"), cid)
	st, err := vc.StatusSandbox(ctx, cdir, vmSandboxID)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Boot.FromTemplate || st.Config.Hypervisor.Factory != dir || st.Config.NetNS == "" {
		t.Errorf("the container's VM: %+v, factory %q, netns %q; want from the template %s, in docker's namespace",
			st.Boot, st.Config.Hypervisor.Factory, st.Config.NetNS, dir)
	}

	ip, _, _ := docker(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", name)
	ip = strings.TrimSpace(ip)
	out, errOut, code = docker(t, "exec", name, "sh", "-c", "hostname; ip -4 -o addr show eth0")
	if code != 0 || !strings.HasPrefix(out, cid[:12]+"\n") || ip == "" ||
		!regexp.MustCompile(`(?m)^\d+: eth0\s+inet `+regexp.QuoteMeta(ip)+`/`).MatchString(out) {
		t.Errorf("docker exec: exit %d, %q (stderr %s); want hostname %s and eth0 with %q", code, out, errOut, cid[:12], ip)
	}
	if ip != "" {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Dial: func(_, addr string) (net.Conn, error) { return dockerD.dial(addr) },
		}}
		resp, err := client.Get(fmt.Sprintf("http://%s/", ip))
		if err != nil {
			t.Fatalf("GET the container's httpd: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != cid[:12]+"\n" {
			t.Errorf("GET http://%s/: %s, %q; want the container's hostname", ip, resp.Status, body)
		}
	}
	if _, errOut, code := docker(t, "rm", "-f", name); code != 0 {
		t.Fatalf("docker rm -f: exit %d: %s", code, errOut)
	}
	dockerNoneLeft(t)
	waitGone(t, st.VMPid, cdir)
}
