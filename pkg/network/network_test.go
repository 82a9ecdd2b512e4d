package network

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/pkg/network/nstest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root (network namespaces)")
	}
}

// pair makes namespaces a and b joined by veth0 (a) / peer0 (b) with
// 10.77.0.1/24 + fd77::1/64 in a, a default route and a permanent
// neighbour.
func pair(t *testing.T, name string) (a, b nstest.NS) {
	a, b = nstest.New(t, name+"a"), nstest.New(t, name+"b")
	nstest.Veth(t, a, "veth0", []string{"10.77.0.1/24", "fd77::1/64"}, b, "peer0", []string{"10.77.0.2/24", "fd77::2/64"})
	h := a.Handle(t)
	l, err := h.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	gw := netip.MustParseAddr("10.77.0.2").AsSlice()
	if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw}); err != nil {
		t.Fatalf("default route: %v", err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:77:02")
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, IP: gw, HardwareAddr: mac, State: netlink.NUD_PERMANENT, Family: unix.AF_INET}); err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	return a, b
}

func TestDiscover(t *testing.T) {
	needRoot(t)
	a, _ := pair(t, "disc")
	eps, err := Discover(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 {
		t.Fatalf("endpoints %+v: want veth0 only (lo skipped)", eps)
	}
	ep := eps[0]
	l, _ := a.Handle(t).LinkByName("veth0")
	if ep.Name != "veth0" || ep.Type != "veth" || ep.MAC != l.Attrs().HardwareAddr.String() || ep.MTU != 1500 {
		t.Errorf("endpoint %+v", ep)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("fd77::1/64")}
	if !slices.Equal(ep.Addrs, want) {
		t.Errorf("addresses %v, want %v (no fe80)", ep.Addrs, want)
	}
	var routes []string
	for _, r := range ep.Routes {
		s := "default"
		if r.Dst.IsValid() {
			s = r.Dst.String()
		}
		if r.Gateway.IsValid() {
			s += " via " + r.Gateway.String()
		}
		routes = append(routes, s)
	}
	for _, w := range []string{"default via 10.77.0.2", "10.77.0.0/24", "fd77::/64"} {
		if !slices.Contains(routes, w) {
			t.Errorf("routes %q: missing %q", routes, w)
		}
	}
	for _, r := range routes {
		if strings.HasPrefix(r, "fe80") {
			t.Errorf("link-local route %q discovered", r)
		}
	}
	if len(ep.Neighbors) != 1 || ep.Neighbors[0].IP.String() != "10.77.0.2" || ep.Neighbors[0].MAC != "02:00:00:00:77:02" {
		t.Errorf("neighbours %+v: want the permanent 10.77.0.2", ep.Neighbors)
	}
}

func TestSetupTeardownTCFilter(t *testing.T) {
	needRoot(t)
	a, _ := pair(t, "tcf")
	before := a.Links(t)
	eps, err := Discover(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	ep := eps[0]
	f, err := Setup(a.Path, &ep, TCFilter, "tap0_vc")
	if err != nil {
		t.Fatal(err)
	}
	if ep.Tap != "tap0_vc" || ep.Model != TCFilter || !ep.LinkQdisc {
		t.Errorf("endpoint after setup: %+v", ep)
	}
	if !slices.Contains(a.Links(t), "tap0_vc:tuntap") {
		t.Errorf("links %v: no tap0_vc", a.Links(t))
	}
	if q := a.Qdiscs(t); !slices.Equal(q, []string{"veth0:ingress", "tap0_vc:ingress"}) && !slices.Equal(q, []string{"tap0_vc:ingress", "veth0:ingress"}) {
		t.Errorf("ingress qdiscs %v: want on veth0 and tap0_vc", q)
	}
	h := a.Handle(t)
	veth, _ := h.LinkByName("veth0")
	tap, _ := h.LinkByName("tap0_vc")
	for _, c := range []struct{ from, to netlink.Link }{{veth, tap}, {tap, veth}} {
		fs, err := h.FilterList(c.from, netlink.HANDLE_INGRESS)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, fl := range fs {
			u, ok := fl.(*netlink.U32)
			if !ok {
				continue
			}
			for _, act := range u.Actions {
				if m, ok := act.(*netlink.MirredAction); ok && m.Ifindex == c.to.Attrs().Index && m.MirredAction == netlink.TCA_EGRESS_REDIR {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no mirred redirect %s -> %s in %+v", c.from.Attrs().Name, c.to.Attrs().Name, fs)
		}
	}
	if tap.Attrs().MTU != ep.MTU {
		t.Errorf("tap mtu %d, want %d", tap.Attrs().MTU, ep.MTU)
	}
	// The hypervisor would hold the file; teardown removes the tap even
	// while it is open.
	if err := Teardown(a.Path, ep); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := a.Links(t); !slices.Equal(got, before) {
		t.Errorf("links after teardown %v, want %v", got, before)
	}
	if q := a.Qdiscs(t); len(q) != 0 {
		t.Errorf("qdiscs left: %v", q)
	}
	// Twice is harmless.
	if err := Teardown(a.Path, ep); err != nil {
		t.Errorf("second teardown: %v", err)
	}
}

// TestSetupQueues: a tcfilter tap asked for 4 queues is a multiqueue tap
// with 4 attached queues, one per file, still joined by the redirects;
// one queue makes a plain tap; a bad count is refused with nothing made.
func TestSetupQueues(t *testing.T) {
	needRoot(t)
	a, _ := pair(t, "mq")
	before := a.Links(t)
	eps, err := Discover(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{0, MaxQueues + 1} {
		ep := eps[0]
		if _, err := SetupQueues(a.Path, &ep, TCFilter, "tap0_vc", bad); err == nil || !strings.Contains(err.Error(), "queues") {
			t.Errorf("%d queues: %v, want an error naming the queues", bad, err)
		}
		if got := a.Links(t); !slices.Equal(got, before) {
			t.Errorf("%d queues: links %v left, want %v", bad, got, before)
		}
	}
	for _, n := range []int{1, 4} {
		ep := eps[0]
		fs, err := SetupQueues(a.Path, &ep, TCFilter, "tap0_vc", n)
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != n {
			t.Errorf("%d queues: %d files", n, len(fs))
		}
		l, err := a.Handle(t).LinkByName("tap0_vc")
		if err != nil {
			t.Fatal(err)
		}
		tap, ok := l.(*netlink.Tuntap)
		if !ok {
			t.Fatalf("tap0_vc is a %T", l)
		}
		multi := tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0
		if multi != (n > 1) || (n > 1 && tap.Queues != n) {
			t.Errorf("%d queues asked: multi_queue %v, %d queues (flags %#x)", n, multi, tap.Queues, tap.Flags)
		}
		if tap.Flags&netlink.TUNTAP_VNET_HDR == 0 {
			t.Errorf("%d queues: no vnet_hdr (flags %#x): the hypervisor could not offload", n, tap.Flags)
		}
		if q := a.Qdiscs(t); len(q) != 2 {
			t.Errorf("%d queues: ingress qdiscs %v, want on veth0 and tap0_vc", n, q)
		}
		if err := Teardown(a.Path, ep); err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			f.Close()
		}
		if got := a.Links(t); !slices.Equal(got, before) {
			t.Errorf("%d queues: links after teardown %v, want %v", n, got, before)
		}
	}
}

func TestSetupLinkVanishes(t *testing.T) {
	needRoot(t)
	for _, step := range []string{"tap", "link-qdisc", "link-filter", "tap-qdisc", "done"} {
		t.Run(step, func(t *testing.T) {
			a, _ := pair(t, "van")
			eps, err := Discover(a.Path)
			if err != nil {
				t.Fatal(err)
			}
			ep := eps[0]
			h := a.Handle(t)
			testHook = func(s string) {
				if s == step {
					l, err := h.LinkByName("veth0")
					if err == nil {
						err = h.LinkDel(l)
					}
					if err != nil {
						t.Errorf("delete veth0: %v", err)
					}
				}
			}
			defer func() { testHook = nil }()
			f, err := Setup(a.Path, &ep, TCFilter, "tap0_vc")
			if err == nil {
				f.Close()
				t.Fatal("setup succeeded with its link deleted")
			}
			if !strings.Contains(err.Error(), "veth0") || !strings.Contains(err.Error(), "vanished") {
				t.Errorf("error %q: want it to name veth0 and say it vanished", err)
			}
			if ep.Tap != "" {
				t.Errorf("endpoint records tap %q after a failed setup", ep.Tap)
			}
			if got := a.Links(t); !slices.Equal(got, []string{"lo:device"}) {
				t.Errorf("links left %v, want lo only", got)
			}
			if q := a.Qdiscs(t); len(q) != 0 {
				t.Errorf("qdiscs left: %v", q)
			}
		})
	}
}

func TestBadNetNS(t *testing.T) {
	needRoot(t)
	const p = "/var/run/netns/vc-no-such-ns"
	if _, err := Discover(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Discover(%s): %v, want an error naming it", p, err)
	}
	ep := Endpoint{Name: "veth0"}
	if _, err := Setup(p, &ep, TCFilter, "tap0_vc"); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("Setup(%s): %v, want an error naming it", p, err)
	}
	if _, err := Discover(""); err == nil {
		t.Error("Discover(\"\"): no error")
	}
	a := nstest.New(t, "nolink")
	if _, err := DiscoverLink(a.Path, "nope0"); err == nil || !strings.Contains(err.Error(), "nope0") {
		t.Errorf("DiscoverLink(nope0): %v", err)
	}
	if _, err := ParseModel("bridge"); err == nil {
		t.Error("ParseModel(bridge): no error")
	}
}

func TestSetupTeardownMacvtap(t *testing.T) {
	needRoot(t)
	a, _ := pair(t, "mvt")
	before := a.Links(t)
	eps, err := Discover(a.Path)
	if err != nil {
		t.Fatal(err)
	}
	ep := eps[0]
	f, err := Setup(a.Path, &ep, Macvtap, "mvtap0_vc")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !slices.Contains(a.Links(t), "mvtap0_vc:macvtap") {
		t.Errorf("links %v: no macvtap", a.Links(t))
	}
	// The file is the macvtap's queue: TUNGETIFF answers on it.
	if _, err := unix.IoctlGetInt(int(f.Fd()), unix.TUNGETIFF); err != nil {
		t.Errorf("TUNGETIFF on the macvtap file: %v", err)
	}
	if err := Teardown(a.Path, ep); err != nil {
		t.Fatal(err)
	}
	if got := a.Links(t); !slices.Equal(got, before) {
		t.Errorf("links after teardown %v, want %v", got, before)
	}
}
