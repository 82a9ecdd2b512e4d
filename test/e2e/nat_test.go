package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// The user-mode NAT (passt) is tested without internet. Outbound: the
// sandbox owner (`vc run`) runs in a test network namespace joined by a
// veth to a peer namespace with an HTTP server, which stands for
// "outside". The host's loopback must NOT be reachable from the guest: a
// server on 127.0.0.1 in the owner's namespace, fetched at the gateway
// 10.0.2.2, must fail (QEMU's libslirp mapped the gateway to it).
// Published ports are fetched on the host's 127.0.0.1.

// serveLoopback serves body over HTTP on the host's 127.0.0.1 and returns
// the port and the remote address of the last request.
func serveLoopback(t *testing.T, body string) (int, func() string) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	last := ""
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = r.RemoteAddr
		mu.Unlock()
		fmt.Fprint(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port, func() string { mu.Lock(); defer mu.Unlock(); return last }
}

// freePort returns a port nobody listens on (for tcp and udp) just now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if u, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			u.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// natNetns makes the owner's namespace (own, 198.18.0.1/24, default
// route to the peer) and the peer (198.18.0.2/24), joined by a veth, and
// removes them (and the veth) at cleanup. It returns their paths.
func natNetns(t *testing.T) (own, peer string) {
	t.Helper()
	tag := strconv.Itoa(os.Getpid() % 100000)
	ownName, peerName := "vce2e-own-"+tag, "vce2e-peer-"+tag
	vethOwn, vethPeer := "vce2eo"+tag, "vce2ep"+tag
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", ownName)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ownName).Run() })
	run("netns", "add", peerName)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", peerName).Run() })
	run("link", "add", vethOwn, "type", "veth", "peer", "name", vethPeer)
	run("link", "set", vethOwn, "netns", ownName)
	run("link", "set", vethPeer, "netns", peerName)
	for _, ns := range []string{ownName, peerName} {
		run("-n", ns, "link", "set", "lo", "up")
	}
	run("-n", ownName, "addr", "add", "198.18.0.1/24", "dev", vethOwn)
	run("-n", ownName, "link", "set", vethOwn, "up")
	run("-n", ownName, "route", "add", "default", "via", "198.18.0.2")
	run("-n", peerName, "addr", "add", "198.18.0.2/24", "dev", vethPeer)
	run("-n", peerName, "link", "set", vethPeer, "up")
	return "/run/netns/" + ownName, "/run/netns/" + peerName
}

// httpdIn serves body as /index.html with busybox httpd on addr in the
// network namespace netns, and checks it answers there.
func httpdIn(t *testing.T, netns, addr, body string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+netns, "busybox", "httpd", "-f", "-p", addr, "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		out, err := exec.Command("nsenter", "--net="+netns, "busybox", "wget", "-qO-", "http://"+addr+"/").Output()
		if err == nil && string(out) == body {
			return
		}
		if i == 50 {
			t.Fatalf("httpd on %s in %s does not answer: %v %q", addr, netns, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vcRunIn is vcRun with vc in the network namespace netns.
func vcRunIn(t *testing.T, netns string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netns, vcBin, "--state-root", stateRoot, "--data-root", dataRoot}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("vc %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// noPasst fails the test if a passt of sandbox id is still running.
func noPasst(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-af", "passt .*/"+id+"/").Output()
		if len(bytes.TrimSpace(out)) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("passt of %s left: %s", id, out)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// `vc run` without --network gets outbound network through the NAT: the
// container fetches from a server outside the owner's namespace (in the
// peer), with the address, route and resolver (resolv.conf) the NAT gives;
// a server on the owner's 127.0.0.1 is not reachable at the gateway
// 10.0.2.2 (nor is the NAT's DNS address a way in). `--net none` (the old
// flag, an alias) has loopback only.
func TestNATOutbound(t *testing.T) {
	own, peer := natNetns(t)
	httpdIn(t, peer, "198.18.0.2:18080", "nat-outbound-ok")
	httpdIn(t, own, "127.0.0.1:18081", "host-loopback-secret")
	out, errOut, code := vcRunIn(t, own, "run", "--rm", "--name", "e2e-nat-out", "busybox", "--", "sh", "-c",
		"ip -4 -o addr show eth0; ip route; cat /etc/resolv.conf; wget -qO- http://198.18.0.2:18080/; echo; "+
			"for a in 10.0.2.2 10.0.2.3; do if timeout 10 wget -qO- http://$a:18081/; then echo; echo LOOPBACK-REACHED-$a; else echo loopback-blocked-$a; fi; done")
	if code != 0 {
		t.Fatalf("run: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	for _, want := range []string{"inet 10.0.2.15/24", "default via 10.0.2.2 dev eth0", "nameserver 10.0.2.3", "nat-outbound-ok", "loopback-blocked-10.0.2.2", "loopback-blocked-10.0.2.3"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "host-loopback-secret") || strings.Contains(out, "LOOPBACK-REACHED") {
		t.Errorf("the guest reached the owner's loopback:\n%s", out)
	}
	noLeftovers(t, "e2e-nat-out")
	noPasst(t, "e2e-nat-out")

	out, errOut, code = vcRunIn(t, own, "run", "--rm", "--name", "e2e-nat-none", "--net", "none", "busybox", "--", "sh", "-c",
		"ip -o link; timeout 10 wget -qO- http://198.18.0.2:18080/")
	if code == 0 || strings.Contains(out, "nat-outbound-ok") {
		t.Fatalf("--net none: exit %d, want the fetch to fail\nstdout %s\nstderr %s", code, out, errOut)
	}
	if strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
		t.Errorf("--net none: want loopback only:\n%s", out)
	}
	noLeftovers(t, "e2e-nat-none")
}

// Ports published through the library (SandboxConfig.NAT.Publish) reach
// a busybox httpd (tcp) and a udp echo server in the guest from the
// host's loopback.
func TestNATPublishLibrary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tcpPort, udpPort := freePort(t), freePort(t)
	// UDP is published on an address of the host that is not loopback:
	// passt (--no-map-gw) sends a loopback client no replies.
	outside := testutil.OutsideAddr(t).String()
	id := "e2e-nat-pub"
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: id, StateRoot: stateRoot,
		NAT: vc.NATConfig{Publish: []vc.PortMapping{
			{HostIP: "127.0.0.1", HostPort: tcpPort, ContainerPort: 80},
			{HostIP: outside, HostPort: udpPort, ContainerPort: 5353, Protocol: "udp"},
		}},
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Stop(context.Background(), 5*time.Second)
		if err := s.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
		noLeftovers(t, id)
		// The published ports are free again once the VM has gone.
		if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(tcpPort)); err != nil {
			t.Errorf("published port %d still taken after delete: %v", tcpPort, err)
		} else {
			l.Close()
		}
	}()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	echo := udpEchoBinary(t)
	var logs bytes.Buffer
	var logMu sync.Mutex
	for cid, script := range map[string]string{
		"web":  "mkdir -p /tmp/w && echo published-ok > /tmp/w/index.html && exec httpd -f -p 80 -h /tmp/w",
		"echo": "exec /udpecho :5353",
	} {
		spec := oci.DefaultSpec([]string{"sh", "-c", script}, nil, "/", false)
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/udpecho", Source: echo, Type: "bind", Options: []string{"bind", "ro"}})
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: spec}); err != nil {
			t.Fatalf("create %s: %v", cid, err)
		}
		w := writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) })
		s.Container(cid).IOStream(ctx, cid, vc.IO{Stdout: w, Stderr: w})
		if err := s.Container(cid).Start(ctx); err != nil {
			t.Fatalf("start %s: %v", cid, err)
		}
	}
	var body string
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", tcpPort))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); strings.Contains(body, "published-ok") {
				break
			}
		}
		if time.Now().After(deadline) {
			logMu.Lock()
			t.Fatalf("GET on published port %d: %v, body %q; container output:\n%s", tcpPort, err, body, logs.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	c, err := net.Dial("udp4", net.JoinHostPort(outside, strconv.Itoa(udpPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 100)
	got := ""
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		c.Write([]byte("ping-udp\n"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(buf); err == nil {
			if got = string(buf[:n]); strings.Contains(got, "echo:ping-udp") {
				break
			}
		}
	}
	if !strings.Contains(got, "echo:ping-udp") {
		logMu.Lock()
		t.Fatalf("udp published port %d: got %q; container output:\n%s", udpPort, got, logs.String())
	}
}

// udpEchoBinary builds a static udp echo server (busybox has none): it
// answers each datagram with "echo:" and the datagram.
func udpEchoBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := `package main

import (
	"net"
	"os"
)

func main() {
	c, err := net.ListenPacket("udp", os.Args[1])
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 1500)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			panic(err)
		}
		c.WriteTo(append([]byte("echo:"), buf[:n]...), addr)
	}
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "udpecho")
	cmd := exec.Command("go", "build", "-o", bin, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build udpecho: %v\n%s", err, out)
	}
	return bin
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Bad --network and -p input is refused, naming the flag or entry, before
// anything is made; so is a host port already in use.
func TestNATBadInput(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-p", "80"}, `-p #1: "80": not two or three fields`},
		{[]string{"-p", "8080:80", "-p", "8081:0"}, `-p #2: "8081:0": container port "0"`},
		{[]string{"-p", "8080:80/sctp"}, `protocol "sctp"`},
		{[]string{"--network", "none", "-p", "8080:80"}, `-p "8080:80": publishing needs --network nat`},
		{[]string{"--network", "bridge"}, `--network "bridge": want nat, none or the path of a network namespace`},
		{[]string{"-p", "127.0.0.1:" + busyPort + ":80"}, "nat.publish[0] 127.0.0.1:" + busyPort + ":80: host port: listen tcp4 127.0.0.1:" + busyPort + ": bind: address already in use"},
		{[]string{"-d", "-p", "127.0.0.1:" + busyPort + ":80"}, "address already in use"},
	} {
		id := "e2e-nat-bad"
		args := append(append([]string{"run", "--rm", "--name", id}, tc.args...), "busybox", "--", "true")
		out, errOut, code := vcRun(t, nil, args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("vc %v: exit %d, want an error with %q\nstdout %s\nstderr %s", args, code, tc.want, out, errOut)
		}
		noLeftovers(t, id)
		noPasst(t, id)
	}
}

// `vc run -d -p` publishes through the detached owner; `vc rm -f` frees
// the port.
func TestNATPublishCLI(t *testing.T) {
	id := "e2e-nat-cli"
	port := freePort(t)
	out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "-p", fmt.Sprintf("127.0.0.1:%d:8000", port), "busybox", "--", "sh", "-c",
		"mkdir -p /tmp/w && echo cli-published-ok > /tmp/w/index.html && exec httpd -f -p 8000 -h /tmp/w")
	if code != 0 {
		t.Fatalf("run -d: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	waitFor(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), "cli-published-ok")
	}, "the published httpd to answer on the host")
	if out, _, _ := vcRun(t, nil, "inspect", id); !strings.Contains(out, fmt.Sprintf(`"host_port": %d`, port)) {
		t.Errorf("inspect does not show the published port:\n%s", out)
	}
	// The NAT is the sandbox's passt, which outlives `vc run -d`.
	if out, _ := exec.Command("pgrep", "-af", "passt .*/"+id+"/").Output(); !strings.Contains(string(out), "--no-map-gw") {
		t.Errorf("no passt --no-map-gw for %s while it runs: %q", id, out)
	}
	if _, errOut, code := vcRun(t, nil, "rm", "-f", id); code != 0 {
		t.Fatalf("rm -f: exit %d: %s", code, errOut)
	}
	noLeftovers(t, id)
	noPasst(t, id)
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Errorf("published port %d still taken after rm: %v", port, err)
	} else {
		l.Close()
	}
}
