package containerd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/pkg/network"
)

// forwardResult is what one port-forward request gave: the bytes of its
// data stream and the message of its error stream.
type forwardResult struct {
	data   []byte
	errMsg string
}

// portForward does what kubectl port-forward does for one connection:
// asks CRI's PortForward for the pod's streaming URL, upgrades it to SPDY
// (portforward.k8s.io), opens the error and data streams of one request
// for port, writes send on the data stream and reads both to their end.
func portForward(t *testing.T, cri *containerd.CRIClient, podID string, port int, send string) forwardResult {
	t.Helper()
	return openForward(t, cri, podID, port, send).finish(t)
}

// forward is a port-forward request whose answer is not read yet.
type forward struct {
	port   int
	conn   httpstream.Connection
	data   httpstream.Stream
	errs   httpstream.Stream
	cancel context.CancelFunc
}

// openForward is portForward up to the write of send.
func openForward(t *testing.T, cri *containerd.CRIClient, podID string, port int, send string) *forward {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	ok := false
	defer func() {
		if !ok {
			cancel()
		}
	}()
	pf, err := cri.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(port)}})
	if err != nil {
		t.Fatalf("PortForward: %v", err)
	}
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pf.GetUrl(), nil)
	if err != nil {
		t.Fatalf("streaming URL %q: %v", pf.GetUrl(), err)
	}
	req.Header.Set("X-Stream-Protocol-Version", "portforward.k8s.io")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("POST %s: %v", pf.GetUrl(), err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		t.Fatalf("SPDY upgrade of %s: %v", pf.GetUrl(), err)
	}
	if p := resp.Header.Get("X-Stream-Protocol-Version"); p != "portforward.k8s.io" {
		t.Fatalf("negotiated protocol %q, want portforward.k8s.io", p)
	}
	h := http.Header{}
	h.Set("port", strconv.Itoa(port))
	h.Set("requestID", "0")
	h.Set("streamType", "error")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("error stream: %v", err)
	}
	errStream.Close() // the client never writes on it
	h.Set("streamType", "data")
	data, err := conn.CreateStream(h)
	if err != nil {
		t.Fatalf("data stream: %v", err)
	}
	// The data stream's write side stays open: closing it would make CRI
	// end the connection a second later, whatever is still to come.
	if _, err := io.WriteString(data, send); err != nil {
		conn.Close()
		t.Fatalf("write to the data stream: %v", err)
	}
	ok = true
	return &forward{port: port, conn: conn, data: data, errs: errStream, cancel: cancel}
}

// finish reads the data and error streams of f to their end.
func (f *forward) finish(t *testing.T) forwardResult {
	t.Helper()
	defer f.cancel()
	defer f.conn.Close()
	data, errStream, port := f.data, f.errs, f.port
	dataCh, errCh := make(chan []byte, 1), make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(data)
		dataCh <- b
	}()
	go func() {
		b, _ := io.ReadAll(errStream)
		errCh <- b
	}()
	var res forwardResult
	timeout := time.After(90 * time.Second)
	for i := 0; i < 2; i++ {
		select {
		case b := <-dataCh:
			res.data = b
		case b := <-errCh:
			res.errMsg = string(b)
		case <-timeout:
			t.Fatalf("port %d: the streams did not end", port)
		}
	}
	return res
}

// checkPortForward runs a pod whose servers listen only on the loopback
// of its network namespace, on 127.0.0.1 and on ::1, and reaches them
// through CRI's PortForward as kubectl port-forward does: a small page, a
// 4 MiB file intact, the ::1-only server (CRI dials 127.0.0.1 first, then
// ::1), a connection whose client stalls (the others go on), and a closed
// port, which reports an error and no data.
func checkPortForward(t *testing.T, c *containerd.Containerd, cri *containerd.CRIClient, handler string) {
	const body = "hello-through-port-forward"
	script := fmt.Sprintf("mkdir -p /www /www6 && echo %s > /www/index.html && echo %s-v6 > /www6/index.html && "+
		"head -c 4194304 /dev/urandom > /www/big && mkdir /www/cgi-bin && "+
		"printf '#!/bin/sh\\necho Content-Type: application/octet-stream\\necho\\nexec head -c %d /dev/zero\\n' > /www/cgi-bin/zero && chmod +x /www/cgi-bin/zero && "+
		"httpd -p 127.0.0.1:8080 -h /www && exec httpd -f -p '[::1]:8081' -h /www6", body, body, 32<<20)
	_, podID, ctrID := runPod(t, c, cri, handler, "pf-"+handler, "sh", "-c", script)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	get := func(path string) string {
		return "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n"
	}
	// The servers start with the container: wait for the first answer.
	var r forwardResult
	waitFor(t, 60*time.Second, "the 127.0.0.1 server through port-forward", func() bool {
		r = portForward(t, cri, podID, 8080, get("/index.html"))
		return strings.Contains(string(r.data), "200 OK")
	})
	if !strings.HasSuffix(strings.TrimSpace(string(r.data)), body) {
		t.Errorf("GET /index.html on 127.0.0.1:8080: %q, want a 200 with %q", r.data, body)
	}

	sum := strings.Fields(string(execSync(t, cri, ctrID, "sha256sum", "/www/big").Stdout))
	start := time.Now()
	r = portForward(t, cri, podID, 8080, get("/big"))
	t.Logf("4 MiB through port-forward in %v", time.Since(start).Round(time.Millisecond))
	_, payload, ok := strings.Cut(string(r.data), "\r\n\r\n")
	h := sha256.Sum256([]byte(payload))
	if !ok || len(payload) != 4<<20 || len(sum) == 0 || hex.EncodeToString(h[:]) != sum[0] {
		t.Errorf("GET /big: %d bytes, sha256 %x; want 4194304 bytes, sha256 %v (error stream %q)", len(payload), h, sum, r.errMsg)
	}

	// CRI dials ::1 only where the host's "localhost" has it (not in
	// every /etc/hosts); vc's agent falls back to ::1 in the guest itself.
	_, v6err := net.DefaultResolver.LookupIP(ctx, "ip6", "localhost")
	r = portForward(t, cri, podID, 8081, get("/index.html"))
	switch reached := strings.HasSuffix(strings.TrimSpace(string(r.data)), body+"-v6"); {
	case v6err == nil || handler == containerd.VCHandler:
		if !reached {
			t.Errorf("GET /index.html on [::1]:8081: %q (error stream %q), want %q", r.data, r.errMsg, body+"-v6")
		}
	case reached:
		t.Errorf("[::1]:8081 answered, though localhost has no IPv6 address here (%v)", v6err)
	default:
		t.Logf("[::1]:8081 not reached: localhost has no IPv6 address here (%v)", v6err)
	}

	// A client that reads nothing stalls its own connection only: what
	// comes from the guest is pulled as the client takes it, and the
	// other connections and the agent's other calls go on meanwhile.
	const streamed = 32 << 20
	stalled := openForward(t, cri, podID, 8080, get("/cgi-bin/zero"))
	time.Sleep(3 * time.Second) // the buffers on the way fill
	for i := 0; i < 3; i++ {
		if r := portForward(t, cri, podID, 8080, get("/index.html")); !strings.HasSuffix(strings.TrimSpace(string(r.data)), body) {
			t.Errorf("while another connection is stalled: %q (error stream %q), want %q", r.data, r.errMsg, body)
		}
	}
	if out := strings.TrimSpace(string(execSync(t, cri, ctrID, "echo", "alive").Stdout)); out != "alive" {
		t.Errorf("exec while a connection is stalled: %q", out)
	}
	start = time.Now()
	r = stalled.finish(t)
	// The CGI's headers end in a bare "\n\n"; they have no NUL.
	if zeros := strings.Count(string(r.data), "\x00"); !strings.Contains(string(r.data), "200 OK") || zeros != streamed {
		t.Errorf("the stalled connection, read at last: %d bytes, %d of them zeros, want a 200 and %d zeros (error stream %q)", len(r.data), zeros, streamed, r.errMsg)
	}
	t.Logf("the rest of %d MiB once read: %v", streamed>>20, time.Since(start).Round(time.Millisecond))

	r = portForward(t, cri, podID, 8082, get("/"))
	if len(r.data) != 0 || r.errMsg == "" {
		t.Errorf("closed port 8082: data %q, error stream %q; want no data and an error", r.data, r.errMsg)
	}
	t.Logf("closed port: %s", r.errMsg)

	// vc's redirect is a table of its own in the pod's namespace, gone
	// with the pod; runc's pods have none.
	netns := podNetNS(ctx, t, cri, podID)
	if has := hasRedirectTable(t, netns); has != (handler == containerd.VCHandler) {
		t.Errorf("pod netns %s has the %s table: %v, want %v", netns, network.RedirectTable, has, handler == containerd.VCHandler)
	}
	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	// containerd removes the namespace here, after the shim removed its
	// table (with the sandbox); a namespace still there has no table.
	if _, err := os.Stat(netns); err == nil && hasRedirectTable(t, netns) {
		t.Errorf("the %s table is left in %s after StopPodSandbox", network.RedirectTable, netns)
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

// podNetNS is the path of the pod's network namespace, from the sandbox
// spec in CRI's verbose status.
func podNetNS(ctx context.Context, t *testing.T, cri *containerd.CRIClient, podID string) string {
	t.Helper()
	st, err := cri.Runtime.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		RuntimeSpec specs.Spec `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("pod status info: %v", err)
	}
	if info.RuntimeSpec.Linux != nil {
		for _, ns := range info.RuntimeSpec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace && ns.Path != "" {
				return ns.Path
			}
		}
	}
	t.Fatalf("the pod's spec names no network namespace: %s", st.GetInfo()["info"])
	return ""
}

// hasRedirectTable tells whether the namespace at path has the shim's
// port-forward nftables table.
func hasRedirectTable(t *testing.T, path string) bool {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+path, "--", "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in %s: %v: %s", path, err, out)
	}
	return strings.Contains(string(out), network.RedirectTable)
}

// TestRuncCRIPortForward proves checkPortForward with runc, whose pod
// servers listen in the namespace CRI dials in.
func TestRuncCRIPortForward(t *testing.T) {
	c := containerd.StartContainerd(t, containerd.Options{})
	c.ImportImages(t)
	checkPortForward(t, c, c.CRI(t), containerd.RuncHandler)
}

// TestVCCRIPortForward: the same with vc, whose pod servers listen in the
// guest: the shim's redirect in the pod's namespace and the agent carry
// each connection there.
func TestVCCRIPortForward(t *testing.T) {
	d := startVC(t, "")
	checkPortForward(t, d.Containerd, d.CRI(t), containerd.VCHandler)
}
