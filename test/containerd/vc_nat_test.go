package containerd_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// The user-mode NAT of a container without a network namespace (ctr run
// without CNI), tested without internet: a server on an address of a test
// veth of the host is "outside" (the NAT reaches the host's addresses,
// never its loopback), and a published port is fetched on the host's
// 127.0.0.1.

// hostHTTP serves body on addr, an address of the host, and returns the
// port.
func hostHTTP(t *testing.T, addr, body string) int {
	t.Helper()
	l, err := net.Listen("tcp4", net.JoinHostPort(addr, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// unusedPort is a host tcp port nobody listens on just now.
func unusedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestVCCtrNAT: `ctr run` without CNI has outbound network through the
// NAT; the io.virtcontainers.publish annotation (allowlisted) publishes a
// busybox httpd on a host port; a bad or busy port is refused, naming the
// annotation, with nothing left behind.
func TestVCCtrNAT(t *testing.T) {
	d := startVC(t, `enable_annotations = ["publish"]`)
	outside := testutil.OutsideAddr(t).String()
	port := hostHTTP(t, outside, "ctr-nat-outbound-ok")
	out, stderr, code := d.ctrRun(t, "vc-nat-out", "sh", "-c", fmt.Sprintf("ip -4 -o addr show eth0; wget -qO- http://%s:%d/", outside, port))
	if code != 0 || !strings.Contains(out, "ctr-nat-outbound-ok") || !strings.Contains(out, "10.0.2.15/24") {
		t.Fatalf("outbound through the NAT: exit %d, stdout %q, stderr %s", code, out, stderr)
	}

	hostPort := unusedPort(t)
	publish := "io.virtcontainers.publish=127.0.0.1:" + strconv.Itoa(hostPort) + ":80"
	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, "--annotation", publish, images.BusyboxRef, "vc-nat-web",
		"sh", "-c", "mkdir -p /tmp/w && echo ctr-published-ok > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w")
	waitFor(t, 2*time.Minute, "the published httpd to answer on the host", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "ctr-published-ok")
	})

	// While the port is taken by that sandbox, a second one asking for it
	// is refused before any VM boots.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		id, ann, errHas string
	}{
		{"vc-nat-busy", publish, "nat.publish[0] 127.0.0.1:" + strconv.Itoa(hostPort) + ":80: host port: listen tcp4"},
		{"vc-nat-bad", "io.virtcontainers.publish=8080:80,99999:1", "annotation io.virtcontainers.publish: entry 2: \"99999:1\": host port"},
		{"vc-nat-proto", "io.virtcontainers.publish=8080:80/sctp", `protocol "sctp"`},
	} {
		out, err := d.CtrErr(ctx, "run", "--rm", "--runtime", containerd.VCRuntime, "--annotation", tc.ann, images.BusyboxRef, tc.id, "true")
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: ctr run: %v (out %q), want an error containing %q", tc.id, err, out, tc.errHas)
		}
		d.CtrErr(ctx, "container", "delete", tc.id)
		if pids := qemuPids(d.stateRoot); len(pids) != 1 {
			t.Errorf("%s: qemu processes %v, want only the web sandbox's", tc.id, pids)
		}
	}

	d.Ctr(t, "task", "kill", "-s", "KILL", "vc-nat-web")
	waitFor(t, time.Minute, "the task to stop", func() bool {
		return regexpMatch(`vc-nat-web\s+\d+\s+STOPPED`, d.Ctr(t, "task", "ls"))
	})
	d.Ctr(t, "task", "delete", "vc-nat-web")
	d.Ctr(t, "container", "delete", "vc-nat-web")
	d.waitNoShims(t)
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("after delete: %s", left)
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(hostPort)); err != nil {
		t.Errorf("published port %d still taken after delete: %v", hostPort, err)
	} else {
		l.Close()
	}
}

// TestVCCtrNATConfig: without the allowlist the publish annotation is
// refused; disable_nat leaves a container without CNI with loopback only.
func TestVCCtrNATConfig(t *testing.T) {
	d := startVC(t, "disable_nat = true")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.CtrErr(ctx, "run", "--rm", "--runtime", containerd.VCRuntime, "--annotation", "io.virtcontainers.publish=8080:80", images.BusyboxRef, "vc-nat-deny", "true")
	if err == nil || !strings.Contains(err.Error(), "annotation io.virtcontainers.publish: not allowed") {
		t.Errorf("publish without the allowlist: %v (out %q), want it refused", err, out)
	}
	d.CtrErr(ctx, "container", "delete", "vc-nat-deny")
	outside := testutil.OutsideAddr(t).String()
	port := hostHTTP(t, outside, "should-not-arrive")
	stdout, stderr, code := d.ctrRun(t, "vc-nat-off", "sh", "-c", fmt.Sprintf("ip -o link; timeout 10 wget -qO- http://%s:%d/", outside, port))
	if code == 0 || strings.Contains(stdout, "should-not-arrive") || strings.Contains(stdout, "eth0") || !strings.Contains(stdout, "lo:") {
		t.Errorf("disable_nat: exit %d, stdout %q, stderr %s; want loopback only and the fetch to fail", code, stdout, stderr)
	}
	d.waitNoShims(t)
	if left := leftovers(d.stateRoot); left != "" {
		t.Errorf("left behind: %s", left)
	}
}
