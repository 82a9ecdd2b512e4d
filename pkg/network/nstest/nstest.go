// Package nstest makes network namespaces and veth pairs for tests, and
// removes them when the test ends. It never touches the host's own
// namespace.
package nstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NS is a named network namespace (ip netns).
type NS struct {
	Name string
	Path string
}

// New makes namespace vct-<name>-<pid> with loopback up, deleted at the
// end of the test.
func New(t testing.TB, name string) NS {
	t.Helper()
	full := fmt.Sprintf("vct-%s-%d", name, os.Getpid())
	exec.Command("ip", "netns", "del", full).Run() // a previous crashed run
	if out, err := exec.Command("ip", "netns", "add", full).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", full, err, out)
	}
	ns := NS{Name: full, Path: filepath.Join("/var/run/netns", full)}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", full).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", full, err, out)
		}
	})
	h := ns.Handle(t)
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("%s: lo up: %v", full, err)
	}
	return ns
}

// Handle is a netlink handle in the namespace, closed at the end of the
// test.
func (ns NS) Handle(t testing.TB) *netlink.Handle {
	t.Helper()
	fd, err := netns.GetFromPath(ns.Path)
	if err != nil {
		t.Fatalf("netns %s: %v", ns.Path, err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatalf("netns %s: handle: %v", ns.Path, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth joins a and b with a veth pair (nameA in a, nameB in b), both up,
// with addresses addrsA and addrsB ("10.77.0.1/24", "fd77::1/64").
func Veth(t testing.TB, a NS, nameA string, addrsA []string, b NS, nameB string, addrsB []string) {
	t.Helper()
	ha, hb := a.Handle(t), b.Handle(t)
	bfd, err := netns.GetFromPath(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer bfd.Close()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA}, PeerName: nameB, PeerNamespace: netlink.NsFd(bfd)}
	if err := ha.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", nameA, nameB, err)
	}
	for _, side := range []struct {
		h     *netlink.Handle
		name  string
		addrs []string
	}{{ha, nameA, addrsA}, {hb, nameB, addrsB}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatalf("%s: %v", side.name, err)
		}
		for _, s := range side.addrs {
			p := netip.MustParsePrefix(s)
			a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			if p.Addr().Is6() {
				a.Flags = 0x02 // IFA_F_NODAD: usable at once
			}
			if err := side.h.AddrAdd(l, a); err != nil {
				t.Fatalf("%s: add %s: %v", side.name, s, err)
			}
		}
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatalf("%s up: %v", side.name, err)
		}
	}
}

// Do runs fn on a thread in the namespace.
func (ns NS) Do(fn func() error) error {
	fd, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		defer fd.Close()
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(fd); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Listen opens a TCP listener in the namespace (the socket stays in it).
func (ns NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Links names the namespace's links and their kinds ("tap0_vc:tuntap").
func (ns NS) Links(t testing.TB) []string {
	t.Helper()
	ls, err := ns.Handle(t).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name+":"+l.Type())
	}
	return out
}

// Qdiscs lists the namespace's ingress qdiscs as "link:ingress".
func (ns NS) Qdiscs(t testing.TB) []string {
	t.Helper()
	h := ns.Handle(t)
	ls, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		qs, err := h.QdiscList(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Type() == "ingress" {
				out = append(out, l.Attrs().Name+":"+q.Type())
			}
		}
	}
	return out
}
