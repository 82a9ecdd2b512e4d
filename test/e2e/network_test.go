package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/network/nstest"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// peerServer serves HTTP from a listener in ns and records the remote
// addresses it sees.
type peerServer struct {
	port  int
	mu    sync.Mutex
	peers []string
}

func servePeer(t *testing.T, ns nstest.NS, body string) *peerServer {
	t.Helper()
	l := ns.Listen(t, ":0") // dual stack
	p := &peerServer{port: l.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		p.mu.Lock()
		p.peers = append(p.peers, host)
		p.mu.Unlock()
		fmt.Fprint(w, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

func (p *peerServer) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.peers) == 0 {
		return ""
	}
	return p.peers[len(p.peers)-1]
}

// runIn runs a container in s and returns its output and exit code.
// (Debian's static busybox wget crashes with -T: use timeout.)
func runIn(ctx context.Context, t *testing.T, s *vc.Sandbox, id string, args ...string) (string, int32) {
	t.Helper()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	spec := oci.DefaultSpec(args, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: id, Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	defer s.Container(id).Delete(context.WithoutCancel(ctx))
	var out bytes.Buffer
	streams := s.Container(id).IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
	if err := s.Container(id).Start(ctx); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	code, err := s.Container(id).Wait(ctx)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	<-streams
	return out.String(), code
}

func hasLink(links []string, name string) bool {
	return slices.ContainsFunc(links, func(l string) bool { return strings.HasPrefix(l, name+":") })
}

// A container in a VM joined to namespace A reaches an HTTP server in
// namespace B over IPv4 and IPv6 with A's addresses; an interface
// hotplugged into the running sandbox (veth into C) works and goes again.
func TestNetworkNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b, c := nstest.New(t, "a"), nstest.New(t, "b"), nstest.New(t, "c")
	nstest.Veth(t, a, "veth0", []string{"10.77.0.1/24", "fd77::1/64"}, b, "peer0", []string{"10.77.0.2/24", "fd77::2/64"})
	srvB := servePeer(t, b, "hello-from-B")
	before := a.Links(t)

	const id = "e2e-net"
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: id, StateRoot: stateRoot, NetNS: a.Path,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop(context.Background(), 5*time.Second)
			s.Delete(context.Background())
		}
	}()
	st := s.Status()
	if len(st.Endpoints) != 1 || st.Endpoints[0].Name != "veth0" || st.Endpoints[0].Tap != "tap0_vc" {
		t.Fatalf("endpoints %+v: want veth0 with tap0_vc", st.Endpoints)
	}
	if l := a.Links(t); !hasLink(l, "tap0_vc") {
		t.Errorf("links in A %v: no tap0_vc", l)
	}
	if q := a.Qdiscs(t); len(q) != 2 {
		t.Errorf("ingress qdiscs in A %v: want veth0 and tap0_vc", q)
	}
	ifaces, err := s.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vethMAC := st.Endpoints[0].MAC
	found := false
	for _, i := range ifaces {
		if i.Name == "eth0" && i.MAC == vethMAC {
			found = true
			addrs := fmt.Sprint(i.Addrs)
			if !strings.Contains(addrs, "10.77.0.1") || !strings.Contains(addrs, "fd77::1") {
				t.Errorf("guest eth0 addresses %s: want 10.77.0.1 and fd77::1", addrs)
			}
		}
	}
	if !found {
		t.Fatalf("guest interfaces %v: no eth0 with the veth's MAC %s", ifaces, vethMAC)
	}

	for _, c := range []struct{ name, url, peer string }{
		{"v4", fmt.Sprintf("http://10.77.0.2:%d/", srvB.port), "10.77.0.1"},
		{"v6", fmt.Sprintf("http://[fd77::2]:%d/", srvB.port), "fd77::1"},
	} {
		out, code := runIn(ctx, t, s, "wget-"+c.name, "timeout", "20", "wget", "-q", "-O", "-", c.url)
		if code != 0 || !strings.Contains(out, "hello-from-B") {
			t.Errorf("%s: wget %s: exit %d, output %q", c.name, c.url, code, out)
		}
		if got := srvB.last(); got != c.peer {
			t.Errorf("%s: server in B saw the client as %q, want %q", c.name, got, c.peer)
		}
	}

	// Hotplug: a second veth, into C, joined to the running sandbox.
	nstest.Veth(t, a, "veth1", []string{"10.78.0.1/24"}, c, "peer1", []string{"10.78.0.2/24"})
	srvC := servePeer(t, c, "hello-from-C")
	if _, err := s.AddInterface(ctx, "nope0"); err == nil || !strings.Contains(err.Error(), "nope0") {
		t.Errorf("AddInterface(nope0): %v, want an error naming it", err)
	}
	iface, err := s.AddInterface(ctx, "veth1")
	if err != nil {
		t.Fatalf("AddInterface(veth1): %v", err)
	}
	if iface.Name != "eth1" || !strings.Contains(fmt.Sprint(iface.Addrs), "10.78.0.1") {
		t.Errorf("hotplugged interface %v: want eth1 with 10.78.0.1", iface)
	}
	if l := a.Links(t); !hasLink(l, "tap1_vc") {
		t.Errorf("links in A %v: no tap1_vc", l)
	}
	url := fmt.Sprintf("http://10.78.0.2:%d/", srvC.port)
	out, code := runIn(ctx, t, s, "wget-hot", "timeout", "20", "wget", "-q", "-O", "-", url)
	if code != 0 || !strings.Contains(out, "hello-from-C") || srvC.last() != "10.78.0.1" {
		t.Errorf("wget %s through the hotplugged interface: exit %d, output %q, server saw %q", url, code, out, srvC.last())
	}
	// The same, seen from another process.
	f, err := vc.FetchSandbox(ctx, stateRoot, id)
	if err != nil {
		t.Fatal(err)
	}
	if eps := f.Status().Endpoints; len(eps) != 2 {
		t.Errorf("fetched endpoints %+v: want 2", eps)
	}
	f.Close()

	if err := s.RemoveInterface(ctx, "veth1"); err != nil {
		t.Fatalf("RemoveInterface(veth1): %v", err)
	}
	ifaces, err = s.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces {
		if i.MAC == iface.MAC || i.Name == "eth1" {
			t.Errorf("guest still has the removed interface: %v", i)
		}
	}
	if l := a.Links(t); hasLink(l, "tap1_vc") {
		t.Errorf("links in A after RemoveInterface %v: tap1_vc left", l)
	}
	if q := a.Qdiscs(t); slices.Contains(q, "veth1:ingress") || len(q) != 2 {
		t.Errorf("ingress qdiscs after RemoveInterface %v: want veth0 and tap0_vc only", q)
	}

	// Another process hotplugs through the VM's second control socket.
	f, err = vc.FetchSandbox(ctx, stateRoot, id)
	if err != nil {
		t.Fatal(err)
	}
	if iface, err = f.AddInterface(ctx, "veth1"); err != nil {
		t.Fatalf("AddInterface(veth1) from another process: %v", err)
	}
	out, code = runIn(ctx, t, s, "wget-hot2", "timeout", "20", "wget", "-q", "-O", "-", url)
	if code != 0 || !strings.Contains(out, "hello-from-C") {
		t.Errorf("wget %s after a hotplug by another process: exit %d, output %q", url, code, out)
	}
	if err := f.RemoveInterface(ctx, "eth1"); err != nil {
		t.Fatalf("RemoveInterface(eth1) from another process: %v", err)
	}
	f.Close()
	if l := a.Links(t); hasLink(l, "tap1_vc") {
		t.Errorf("links in A after RemoveInterface by another process %v: tap1_vc left", l)
	}

	// Stopping the sandbox leaves A as it was.
	if err := vc.StopSandbox(ctx, stateRoot, id, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := vc.DeleteSandbox(ctx, stateRoot, id); err != nil {
		t.Fatal(err)
	}
	stopped = true
	noLeftovers(t, id)
	after := slices.DeleteFunc(a.Links(t), func(l string) bool { return strings.HasPrefix(l, "veth1:") })
	if !slices.Equal(after, before) {
		t.Errorf("links in A after the sandbox %v, want %v", after, before)
	}
	if q := a.Qdiscs(t); len(q) != 0 {
		t.Errorf("ingress qdiscs left in A: %v", q)
	}
}

// Bad network input fails clearly and leaves nothing behind: a netns that
// does not exist, and a VM that fails to start after the taps were made.
func TestNetworkBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hc := vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256}
	const missing = "/var/run/netns/vc-e2e-no-such-ns"
	_, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-net-bad", StateRoot: stateRoot, NetNS: missing, Hypervisor: hc})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("CreateSandbox with netns %s: %v, want an error naming it", missing, err)
	}
	noLeftovers(t, "e2e-net-bad")

	a, b := nstest.New(t, "bad-a"), nstest.New(t, "bad-b")
	nstest.Veth(t, a, "veth0", []string{"10.79.0.1/24"}, b, "peer0", []string{"10.79.0.2/24"})
	before := a.Links(t)
	bad := hc
	bad.Path = "/nonexistent/qemu-system-x86_64"
	_, err = vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-net-bad2", StateRoot: stateRoot, NetNS: a.Path, Hypervisor: bad})
	if err == nil {
		t.Fatal("CreateSandbox with a missing qemu succeeded")
	}
	noLeftovers(t, "e2e-net-bad2")
	if got := a.Links(t); !slices.Equal(got, before) {
		t.Errorf("links after the failed create %v, want %v", got, before)
	}
	if q := a.Qdiscs(t); len(q) != 0 {
		t.Errorf("ingress qdiscs after the failed create: %v", q)
	}
	if _, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "e2e-net-bad3", StateRoot: stateRoot, NetNS: a.Path, NetworkModel: "bridge", Hypervisor: hc}); err == nil || !strings.Contains(err.Error(), "bridge") {
		t.Errorf("network model bridge: %v", err)
	}
}

// The macvtap model: the VM reaches the peer namespace through a macvtap
// on the veth; a VM that dies takes its endpoints with it (the owner's
// monitor tears them down).
func TestNetworkMacvtapAndVMDeath(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a, b := nstest.New(t, "mv-a"), nstest.New(t, "mv-b")
	nstest.Veth(t, a, "veth0", []string{"10.80.0.1/24"}, b, "peer0", []string{"10.80.0.2/24"})
	srv := servePeer(t, b, "hello-macvtap")
	before := a.Links(t)
	const id = "e2e-net-mv"
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: id, StateRoot: stateRoot, NetNS: a.Path, NetworkModel: "macvtap",
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
	}()
	if l := a.Links(t); !slices.Contains(l, "tap0_vc:macvtap") {
		t.Errorf("links in A %v: no macvtap tap0_vc", l)
	}
	url := fmt.Sprintf("http://10.80.0.2:%d/", srv.port)
	out, code := runIn(ctx, t, s, "wget-mv", "timeout", "20", "wget", "-q", "-O", "-", url)
	if code != 0 || !strings.Contains(out, "hello-macvtap") || srv.last() != "10.80.0.1" {
		t.Errorf("wget %s over macvtap: exit %d, output %q, server saw %q", url, code, out, srv.last())
	}
	// The VM dies under the sandbox.
	if err := syscall.Kill(s.Status().VMPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Exited():
	case <-ctx.Done():
		t.Fatal("the owner did not notice the VM's death")
	}
	if got := a.Links(t); !slices.Equal(got, before) {
		t.Errorf("links in A after the VM died %v, want %v", got, before)
	}
	if eps := s.Status().Endpoints; len(eps) != 0 {
		t.Errorf("endpoints still recorded after the VM died: %+v", eps)
	}
}

// A sandbox whose namespace has no link yet boots without a NIC (and
// without loading the virtio-net driver); the first interface arrives by
// hotplug, gets its driver then, and works.
func TestNetworkFirstNICByHotplug(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := nstest.New(t, "a"), nstest.New(t, "b")

	s := newSandbox(ctx, t, "e2e-net-late", a.Path)
	if eps := s.Status().Endpoints; len(eps) != 0 {
		t.Fatalf("endpoints %+v in a namespace without links", eps)
	}
	// A kernel without modules (the minimal one) has virtio-net built in:
	// no /proc/modules, nothing loaded.
	out, code := runIn(ctx, t, s, "lsmod", "sh", "-c", "if [ -e /proc/modules ]; then grep -c ^virtio_net /proc/modules; else echo 0; fi; ls /sys/class/net")
	if code != 0 || !strings.HasPrefix(out, "0\n") || strings.Contains(out, "eth") {
		t.Errorf("a sandbox without NICs: exit %d, output %q; want virtio_net not loaded and no ethN", code, out)
	}

	nstest.Veth(t, a, "veth0", []string{"10.87.0.1/24"}, b, "peer0", []string{"10.87.0.2/24"})
	srv := servePeer(t, b, "hello-late")
	iface, err := s.AddInterface(ctx, "veth0")
	if err != nil {
		t.Fatalf("AddInterface(veth0): %v", err)
	}
	if iface.Name != "eth0" || !strings.Contains(fmt.Sprint(iface.Addrs), "10.87.0.1") {
		t.Errorf("hotplugged interface %v: want eth0 with 10.87.0.1", iface)
	}
	url := fmt.Sprintf("http://10.87.0.2:%d/", srv.port)
	out, code = runIn(ctx, t, s, "wget", "timeout", "20", "wget", "-q", "-O", "-", url)
	if code != 0 || !strings.Contains(out, "hello-late") || srv.last() != "10.87.0.1" {
		t.Errorf("wget %s through the first, hotplugged interface: exit %d, output %q, server saw %q", url, code, out, srv.last())
	}
}
