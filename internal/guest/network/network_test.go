package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/network/netnstest"
)

const (
	mac1 = "02:00:00:00:00:01"
	mac2 = "02:00:00:00:00:02"
)

// testNet is a network namespace with two taps (tap1, tap2), a Manager
// for it and a netlink handle to check what the Manager did.
type testNet struct {
	ns netns.NsHandle
	m  *Manager
	h  *netlink.Handle
}

func newTestNet(t *testing.T) *testNet {
	t.Helper()
	ns := netnstest.New(t)
	m, err := NewAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("a new namespace should hold only lo, not %v", linkNames(links))
	}
	netnstest.AddTap(t, ns, "tap1", mac1)
	netnstest.AddTap(t, ns, "tap2", mac2)
	return &testNet{ns: ns, m: m, h: h}
}

func linkNames(ls []netlink.Link) []string {
	var names []string
	for _, l := range ls {
		names = append(names, l.Attrs().Name)
	}
	return names
}

func (n *testNet) addrs(t *testing.T, name string) []string {
	t.Helper()
	l, err := n.h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	as, err := n.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	return out
}

// setupEth0 renames tap1 to eth0 with 10.1.2.3/24 and 2001:db8::3/64.
func (n *testNet) setupEth0(t *testing.T) *pb.Interface {
	t.Helper()
	got, err := n.m.UpdateInterface(context.Background(), &pb.Interface{
		HwAddr: mac1,
		Name:   "eth0",
		Mtu:    1400,
		IPAddresses: []*pb.IPAddress{
			{Family: pb.IPFamily_v4, Address: "10.1.2.3", Mask: "24"},
			{Family: pb.IPFamily_v6, Address: "2001:db8::3", Mask: "64"},
		},
	})
	if err != nil {
		t.Fatalf("UpdateInterface: %v", err)
	}
	return got
}

func hasAddr(ifc *pb.Interface, addr, mask string) bool {
	for _, a := range ifc.IPAddresses {
		if a.Address == addr && a.Mask == mask {
			return true
		}
	}
	return false
}

func TestUpdateInterface(t *testing.T) {
	n := newTestNet(t)
	got := n.setupEth0(t)

	l, err := n.h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("tap1 was not renamed eth0: %v", err)
	}
	if l.Attrs().HardwareAddr.String() != mac1 {
		t.Errorf("eth0 has MAC %s, want %s", l.Attrs().HardwareAddr, mac1)
	}
	if l.Attrs().MTU != 1400 {
		t.Errorf("eth0 MTU %d, want 1400", l.Attrs().MTU)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0 is not up: %v", l.Attrs().Flags)
	}
	addrs := n.addrs(t, "eth0")
	for _, want := range []string{"10.1.2.3/24", "2001:db8::3/64"} {
		if !slices.Contains(addrs, want) {
			t.Errorf("eth0 addresses %v lack %s", addrs, want)
		}
	}

	if got.Name != "eth0" || got.Device != "eth0" || got.HwAddr != mac1 || got.Mtu != 1400 || got.Type != "tuntap" {
		t.Errorf("UpdateInterface returned %v", got)
	}
	if got.RawFlags&unix.IFF_UP == 0 {
		t.Errorf("returned raw flags %#x lack IFF_UP", got.RawFlags)
	}
	if !hasAddr(got, "10.1.2.3", "24") || !hasAddr(got, "2001:db8::3", "64") {
		t.Errorf("returned addresses %v", got.IPAddresses)
	}
	for _, a := range got.IPAddresses {
		want := pb.IPFamily_v4
		if strings.Contains(a.Address, ":") {
			want = pb.IPFamily_v6
		}
		if a.Family != want {
			t.Errorf("address %s has family %v", a.Address, a.Family)
		}
	}

	// Again, with other addresses: the old ones go.
	got, err = n.m.UpdateInterface(context.Background(), &pb.Interface{
		HwAddr:      mac1,
		IPAddresses: []*pb.IPAddress{{Address: "10.1.2.4", Mask: "16"}, {Address: "10.1.2.4", Mask: "16"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	addrs = n.addrs(t, "eth0")
	if slices.Contains(addrs, "10.1.2.3/24") || slices.Contains(addrs, "2001:db8::3/64") || !slices.Contains(addrs, "10.1.2.4/16") {
		t.Errorf("after replacing, eth0 has %v, want 10.1.2.4/16 only (and link-local)", addrs)
	}
	if got.Name != "eth0" || got.Mtu != 1400 {
		t.Errorf("name and MTU should be kept when not given: %v", got)
	}

	// Renaming an up link works, and it comes back up.
	if got, err = n.m.UpdateInterface(context.Background(), &pb.Interface{HwAddr: mac1, Name: "eth1", IPAddresses: got.IPAddresses}); err != nil {
		t.Fatal(err)
	}
	if got.Name != "eth1" || got.RawFlags&unix.IFF_UP == 0 || !hasAddr(got, "10.1.2.4", "16") {
		t.Errorf("after renaming: %v", got)
	}
	if got, err = n.m.UpdateInterface(context.Background(), &pb.Interface{HwAddr: mac1, Name: "eth0", IPAddresses: got.IPAddresses}); err != nil {
		t.Fatal(err)
	}

	// ListInterfaces: both taps, no loopback.
	ifs, err := n.m.ListInterfaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
		if i.Name == "eth0" && (!hasAddr(i, "10.1.2.4", "16") || i.HwAddr != mac1) {
			t.Errorf("ListInterfaces eth0: %v", i)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"eth0", "tap2"}) {
		t.Errorf("ListInterfaces names %v, want eth0 and tap2", names)
	}
}

func TestUpdateInterfaceNoARP(t *testing.T) {
	n := newTestNet(t)
	if _, err := n.m.UpdateInterface(context.Background(), &pb.Interface{HwAddr: mac2, RawFlags: unix.IFF_NOARP}); err != nil {
		t.Fatal(err)
	}
	l, err := n.h.LinkByName("tap2")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().RawFlags&unix.IFF_NOARP == 0 {
		t.Errorf("tap2 flags %#x lack NOARP", l.Attrs().RawFlags)
	}
	if _, err := n.m.UpdateInterface(context.Background(), &pb.Interface{HwAddr: mac2}); err != nil {
		t.Fatal(err)
	}
	if l, err = n.h.LinkByName("tap2"); err != nil {
		t.Fatal(err)
	}
	if l.Attrs().RawFlags&unix.IFF_NOARP != 0 {
		t.Errorf("tap2 flags %#x still have NOARP", l.Attrs().RawFlags)
	}
}

// routeKey is a route as ip-route prints it, for comparisons.
func routeKey(r *pb.Route) string {
	s := r.Dest
	if s == "" {
		s = "default"
	}
	if r.Gateway != "" {
		s += " via " + r.Gateway
	}
	s += " dev " + r.Device
	if r.Source != "" {
		s += " src " + r.Source
	}
	return s
}

func routeKeys(rs []*pb.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, routeKey(r))
	}
	slices.Sort(out)
	return out
}

// kernelRoutes lists the main table through the test's own handle.
func (n *testNet) kernelRoutes(t *testing.T) []string {
	t.Helper()
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		l, err := n.h.LinkByIndex(r.LinkIndex)
		if err != nil || l.Attrs().Name == "lo" {
			continue
		}
		out = append(out, routeKey(toPBRoute(r, l.Attrs().Name)))
	}
	slices.Sort(out)
	return out
}

func TestUpdateRoutes(t *testing.T) {
	n := newTestNet(t)
	n.setupEth0(t)
	ctx := context.Background()

	// A route that UpdateRoutes must remove.
	eth0, err := n.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	stale := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4(192, 168, 7, 0).To4(), Mask: net.CIDRMask(24, 32)}}
	if err := n.h.RouteAdd(stale); err != nil {
		t.Fatal(err)
	}

	req := &pb.Routes{Routes: []*pb.Route{
		// Gateway routes first on purpose: the agent must add link routes first.
		{Dest: "10.9.0.0/16", Gateway: "10.1.2.1", Device: "eth0"},
		{Gateway: "10.1.2.1", Device: "eth0"},
		{Dest: "2001:db8:1::/48", Gateway: "2001:db8::1", Device: "eth0", Family: pb.IPFamily_v6},
		{Dest: "default", Gateway: "2001:db8::1", Device: "eth0", Family: pb.IPFamily_v6},
		{Dest: "10.1.2.0/24", Device: "eth0", Source: "10.1.2.3", Scope: unix.RT_SCOPE_LINK},
		{Dest: "10.5.5.5", Device: "eth0", Scope: unix.RT_SCOPE_LINK},
		{Dest: "2001:db8::/64", Device: "eth0", Family: pb.IPFamily_v6},
		{Dest: "fe80::/64", Device: "eth0", Family: pb.IPFamily_v6},
	}}
	got, err := n.m.UpdateRoutes(ctx, req)
	if err != nil {
		t.Fatalf("UpdateRoutes: %v", err)
	}
	want := []string{
		"10.1.2.0/24 dev eth0 src 10.1.2.3",
		"10.5.5.5/32 dev eth0",
		"10.9.0.0/16 via 10.1.2.1 dev eth0",
		"2001:db8:1::/48 via 2001:db8::1 dev eth0",
		"2001:db8::/64 dev eth0",
		"default via 10.1.2.1 dev eth0",
		"default via 2001:db8::1 dev eth0",
		"fe80::/64 dev eth0",
	}
	if k := n.kernelRoutes(t); !slices.Equal(k, want) {
		t.Errorf("kernel routes:\n%s\nwant:\n%s", strings.Join(k, "\n"), strings.Join(want, "\n"))
	}
	if k := routeKeys(got); !slices.Equal(k, want) {
		t.Errorf("UpdateRoutes returned:\n%s\nwant:\n%s", strings.Join(k, "\n"), strings.Join(want, "\n"))
	}
	listed, err := n.m.ListRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if k := routeKeys(listed); !slices.Equal(k, want) {
		t.Errorf("ListRoutes:\n%s\nwant:\n%s", strings.Join(k, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range listed {
		if strings.Contains(r.Dest+r.Gateway, ":") != (r.Family == pb.IPFamily_v6) {
			t.Errorf("route %s has family %v", routeKey(r), r.Family)
		}
		if r.Dest == "10.1.2.0/24" && r.Scope != unix.RT_SCOPE_LINK {
			t.Errorf("route %s has scope %d, want link", routeKey(r), r.Scope)
		}
	}

	// What ListRoutes returns can be given back unchanged.
	if _, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: listed}); err != nil {
		t.Fatalf("UpdateRoutes(ListRoutes()): %v", err)
	}
	if k := n.kernelRoutes(t); !slices.Equal(k, want) {
		t.Errorf("after re-applying ListRoutes:\n%s", strings.Join(k, "\n"))
	}

	// A smaller set replaces everything but the kernel's fe80::/64.
	if _, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: []*pb.Route{
		{Dest: "10.1.2.0/24", Device: "eth0", Scope: unix.RT_SCOPE_LINK},
	}}); err != nil {
		t.Fatal(err)
	}
	want = []string{"10.1.2.0/24 dev eth0", "fe80::/64 dev eth0"}
	if k := n.kernelRoutes(t); !slices.Equal(k, want) {
		t.Errorf("after replacing with one route:\n%s\nwant:\n%s", strings.Join(k, "\n"), strings.Join(want, "\n"))
	}

	// An empty list clears the table (but fe80::/64).
	if _, err := n.m.UpdateRoutes(ctx, &pb.Routes{}); err != nil {
		t.Fatal(err)
	}
	if k := n.kernelRoutes(t); !slices.Equal(k, []string{"fe80::/64 dev eth0"}) {
		t.Errorf("after clearing: %v", k)
	}
}

func TestUpdateRoutesRollback(t *testing.T) {
	n := newTestNet(t)
	n.setupEth0(t)
	ctx := context.Background()
	before := []*pb.Route{
		{Dest: "10.1.2.0/24", Device: "eth0", Scope: unix.RT_SCOPE_LINK},
		{Gateway: "10.1.2.1", Device: "eth0"},
	}
	if _, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: before}); err != nil {
		t.Fatal(err)
	}
	want := n.kernelRoutes(t)

	// The second route's gateway is on no link: the kernel refuses it,
	// and the table must be as it was.
	_, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: []*pb.Route{
		{Dest: "10.1.2.0/24", Device: "eth0", Scope: unix.RT_SCOPE_LINK},
		{Dest: "10.8.0.0/16", Gateway: "10.77.0.1", Device: "eth0"},
	}})
	if err == nil {
		t.Fatal("a route through an unreachable gateway was accepted")
	}
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "routes.Routes[1]") {
		t.Errorf("error %q: want InvalidArgument naming routes.Routes[1]", err)
	}
	if k := n.kernelRoutes(t); !slices.Equal(k, want) {
		t.Errorf("routes not restored:\n%s\nwant:\n%s", strings.Join(k, "\n"), strings.Join(want, "\n"))
	}
}

func TestAddARPNeighbors(t *testing.T) {
	n := newTestNet(t)
	n.setupEth0(t)
	ctx := context.Background()
	req := &pb.ARPNeighbors{ARPNeighbors: []*pb.ARPNeighbor{
		{ToIPAddress: &pb.IPAddress{Address: "10.1.2.50"}, Device: "eth0", Lladdr: "02:00:00:00:00:50"},
		{ToIPAddress: &pb.IPAddress{Family: pb.IPFamily_v6, Address: "2001:db8::50"}, Device: "eth0", Lladdr: "02:00:00:00:00:51", State: netlink.NUD_PERMANENT},
	}}
	if err := n.m.AddARPNeighbors(ctx, req); err != nil {
		t.Fatalf("AddARPNeighbors: %v", err)
	}
	// Adding them again is fine.
	if err := n.m.AddARPNeighbors(ctx, req); err != nil {
		t.Fatalf("AddARPNeighbors again: %v", err)
	}
	eth0, err := n.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fam      int
		ip, mac  string
		famLabel string
	}{
		{netlink.FAMILY_V4, "10.1.2.50", "02:00:00:00:00:50", "ARP"},
		{netlink.FAMILY_V6, "2001:db8::50", "02:00:00:00:00:51", "NDP"},
	} {
		ns, err := n.h.NeighList(eth0.Attrs().Index, c.fam)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range ns {
			if e.IP.Equal(net.ParseIP(c.ip)) {
				found = true
				if e.HardwareAddr.String() != c.mac || e.State != netlink.NUD_PERMANENT {
					t.Errorf("%s entry %s: lladdr %s state %#x, want %s permanent", c.famLabel, c.ip, e.HardwareAddr, e.State, c.mac)
				}
			}
		}
		if !found {
			t.Errorf("no %s entry for %s in %v", c.famLabel, c.ip, ns)
		}
	}
}

// TestBadRequests checks that every malformed request fails with the
// right class, names the field, and changes nothing.
func TestBadRequests(t *testing.T) {
	n := newTestNet(t)
	n.setupEth0(t)
	ctx := context.Background()
	if _, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: []*pb.Route{{Dest: "10.1.2.0/24", Device: "eth0", Scope: unix.RT_SCOPE_LINK}}}); err != nil {
		t.Fatal(err)
	}
	routesBefore := n.kernelRoutes(t)
	ifsBefore, err := n.m.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}

	ifc := func(mod func(*pb.Interface)) func() error {
		return func() error {
			i := &pb.Interface{HwAddr: mac1, IPAddresses: []*pb.IPAddress{{Address: "10.1.2.3", Mask: "24"}}}
			mod(i)
			_, err := n.m.UpdateInterface(ctx, i)
			return err
		}
	}
	route := func(r *pb.Route) func() error {
		return func() error {
			_, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: []*pb.Route{{Dest: "10.1.2.0/24", Device: "eth0"}, r}})
			return err
		}
	}
	neigh := func(nb *pb.ARPNeighbor) func() error {
		return func() error {
			return n.m.AddARPNeighbors(ctx, &pb.ARPNeighbors{ARPNeighbors: []*pb.ARPNeighbor{nb}})
		}
	}
	goodIP := &pb.IPAddress{Address: "10.1.2.9"}
	cases := []struct {
		name  string
		call  func() error
		class func(error) bool
		field string
	}{
		{"nil interface", func() error { _, err := n.m.UpdateInterface(ctx, nil); return err }, errdefs.IsInvalidArgument, "interface: missing"},
		{"no hwAddr", ifc(func(i *pb.Interface) { i.HwAddr = "" }), errdefs.IsInvalidArgument, "interface.hwAddr"},
		{"bad MAC", ifc(func(i *pb.Interface) { i.HwAddr = "02:00:zz:00:00:01" }), errdefs.IsInvalidArgument, "interface.hwAddr"},
		{"unknown MAC", ifc(func(i *pb.Interface) { i.HwAddr = "02:00:00:00:00:99" }), errdefs.IsNotFound, "interface.hwAddr"},
		{"loopback MAC", ifc(func(i *pb.Interface) { i.HwAddr = "00:00:00:00:00:00" }), errdefs.IsNotFound, "interface.hwAddr"},
		{"bad IP", ifc(func(i *pb.Interface) { i.IPAddresses[0].Address = "10.1.2" }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].address"},
		{"IP with zone", ifc(func(i *pb.Interface) { i.IPAddresses[0].Address = "fe80::1%eth0" }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].address"},
		{"nil address", ifc(func(i *pb.Interface) { i.IPAddresses = append(i.IPAddresses, nil) }), errdefs.IsInvalidArgument, "interface.IPAddresses[1]"},
		{"no mask", ifc(func(i *pb.Interface) { i.IPAddresses[0].Mask = "" }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].mask"},
		{"mask 33", ifc(func(i *pb.Interface) { i.IPAddresses[0].Mask = "33" }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].mask"},
		{"dotted mask", ifc(func(i *pb.Interface) { i.IPAddresses[0].Mask = "255.255.255.0" }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].mask"},
		{"signed mask", ifc(func(i *pb.Interface) { i.IPAddresses[0].Mask = "+24" }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].mask"},
		{"v6 mask 129", ifc(func(i *pb.Interface) { i.IPAddresses[0] = &pb.IPAddress{Address: "2001:db8::1", Mask: "129"} }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].mask"},
		{"family v6 for v4", ifc(func(i *pb.Interface) { i.IPAddresses[0].Family = pb.IPFamily_v6 }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].family"},
		{"unknown family", ifc(func(i *pb.Interface) { i.IPAddresses[0].Family = 7 }), errdefs.IsInvalidArgument, "interface.IPAddresses[0].family"},
		{"name with slash", ifc(func(i *pb.Interface) { i.Name = "a/b" }), errdefs.IsInvalidArgument, "interface.name"},
		{"long name", ifc(func(i *pb.Interface) { i.Name = "abcdefghijklmnop" }), errdefs.IsInvalidArgument, "interface.name"},
		{"name taken", ifc(func(i *pb.Interface) { i.Name = "tap2" }), errdefs.IsAlreadyExists, "interface.name"},
		{"huge MTU", ifc(func(i *pb.Interface) { i.Mtu = 1 << 40 }), errdefs.IsInvalidArgument, "interface.mtu"},
		{"MTU too small", ifc(func(i *pb.Interface) { i.Mtu = 10 }), errdefs.IsInvalidArgument, "interface.mtu"},

		{"nil routes", func() error { _, err := n.m.UpdateRoutes(ctx, nil); return err }, errdefs.IsInvalidArgument, "routes: missing"},
		{"nil route", route(nil), errdefs.IsInvalidArgument, "routes.Routes[1]"},
		{"no device", route(&pb.Route{Dest: "10.3.0.0/16", Gateway: "10.1.2.1"}), errdefs.IsInvalidArgument, "routes.Routes[1].device"},
		{"unknown device", route(&pb.Route{Dest: "10.3.0.0/16", Gateway: "10.1.2.1", Device: "eth9"}), errdefs.IsNotFound, "routes.Routes[1].device"},
		{"bad dest", route(&pb.Route{Dest: "10.3.0.0/33", Device: "eth0"}), errdefs.IsInvalidArgument, "routes.Routes[1].dest"},
		{"garbage dest", route(&pb.Route{Dest: "ten", Device: "eth0"}), errdefs.IsInvalidArgument, "routes.Routes[1].dest"},
		{"bad gateway", route(&pb.Route{Dest: "10.3.0.0/16", Gateway: "10.1.2.", Device: "eth0"}), errdefs.IsInvalidArgument, "routes.Routes[1].gateway"},
		{"bad source", route(&pb.Route{Dest: "10.3.0.0/16", Source: "x", Device: "eth0"}), errdefs.IsInvalidArgument, "routes.Routes[1].source"},
		{"mixed families", route(&pb.Route{Dest: "10.3.0.0/16", Gateway: "2001:db8::1", Device: "eth0"}), errdefs.IsInvalidArgument, "routes.Routes[1]"},
		{"family v6 for v4", route(&pb.Route{Dest: "10.3.0.0/16", Device: "eth0", Family: pb.IPFamily_v6}), errdefs.IsInvalidArgument, "routes.Routes[1].family"},
		{"bad scope", route(&pb.Route{Dest: "10.3.0.0/16", Device: "eth0", Scope: 300}), errdefs.IsInvalidArgument, "routes.Routes[1].scope"},
		{"link-local on unknown device", route(&pb.Route{Dest: "fe80::/64", Device: "eth9", Family: pb.IPFamily_v6}), errdefs.IsNotFound, "routes.Routes[1].device"},

		{"nil neighbors", func() error { return n.m.AddARPNeighbors(ctx, nil) }, errdefs.IsInvalidArgument, "neighbors: missing"},
		{"nil neighbor", neigh(nil), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0]"},
		{"no toIPAddress", neigh(&pb.ARPNeighbor{Device: "eth0", Lladdr: mac2}), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0].toIPAddress"},
		{"bad neighbor IP", neigh(&pb.ARPNeighbor{ToIPAddress: &pb.IPAddress{Address: "1.2.3.4.5"}, Device: "eth0", Lladdr: mac2}), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0].toIPAddress.address"},
		{"no lladdr", neigh(&pb.ARPNeighbor{ToIPAddress: goodIP, Device: "eth0"}), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0].lladdr"},
		{"bad lladdr", neigh(&pb.ARPNeighbor{ToIPAddress: goodIP, Device: "eth0", Lladdr: "nope"}), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0].lladdr"},
		{"no neighbor device", neigh(&pb.ARPNeighbor{ToIPAddress: goodIP, Lladdr: mac2}), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0].device"},
		{"unknown neighbor device", neigh(&pb.ARPNeighbor{ToIPAddress: goodIP, Device: "eth9", Lladdr: mac2}), errdefs.IsNotFound, "neighbors.ARPNeighbors[0].device"},
		{"bad state", neigh(&pb.ARPNeighbor{ToIPAddress: goodIP, Device: "eth0", Lladdr: mac2, State: -1}), errdefs.IsInvalidArgument, "neighbors.ARPNeighbors[0].state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if err == nil {
				t.Fatal("accepted")
			}
			if !c.class(err) {
				t.Errorf("error %q has the wrong class", err)
			}
			if !strings.HasPrefix(err.Error(), c.field) {
				t.Errorf("error %q does not start with %q", err, c.field)
			}
		})
	}

	if k := n.kernelRoutes(t); !slices.Equal(k, routesBefore) {
		t.Errorf("bad requests changed the routes:\n%s\nwas:\n%s", strings.Join(k, "\n"), strings.Join(routesBefore, "\n"))
	}
	ifsAfter, err := n.m.ListInterfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ifsAfter) != len(ifsBefore) {
		t.Fatalf("interfaces changed: %v -> %v", ifsBefore, ifsAfter)
	}
	for i := range ifsAfter {
		a, b := ifsBefore[i], ifsAfter[i]
		if a.Name != b.Name || a.Mtu != b.Mtu || a.RawFlags&unix.IFF_UP != b.RawFlags&unix.IFF_UP {
			t.Errorf("interface changed: %v -> %v", a, b)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	m := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.UpdateInterface(ctx, &pb.Interface{}); !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateInterface: %v", err)
	}
	if _, err := m.UpdateRoutes(ctx, &pb.Routes{}); !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateRoutes: %v", err)
	}
	if err := m.AddARPNeighbors(ctx, &pb.ARPNeighbors{}); !errors.Is(err, context.Canceled) {
		t.Errorf("AddARPNeighbors: %v", err)
	}
}

func TestParseDest(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8":          "10.0.0.0/8",
		"10.1.2.3":            "10.1.2.3/32",
		"2001:db8::1":         "2001:db8::1/128",
		"2001:db8::1/64":      "2001:db8::/64",
		"::ffff:10.1.2.3/120": "10.1.2.0/24",
		"0.0.0.0/0":           "0.0.0.0/0",
	} {
		p, ok, err := parseDest("d", in)
		if err != nil || !ok || p != netip.MustParsePrefix(want) {
			t.Errorf("parseDest(%q) = %v, %v, %v; want %s", in, p, ok, err, want)
		}
	}
	for _, in := range []string{"", "default"} {
		if _, ok, err := parseDest("d", in); ok || err != nil {
			t.Errorf("parseDest(%q) = %v, %v; want the default route", in, ok, err)
		}
	}
}

// A kernel without IPV6_MULTIPLE_TABLES (the minimal guest kernel) keeps
// the local routes of its IPv6 addresses in the main table: UpdateRoutes
// must leave such routes alone, and ListRoutes not report them. A local
// route put in the main table stands in for them here.
func TestUpdateRoutesKeepsLocal(t *testing.T) {
	n := newTestNet(t)
	n.setupEth0(t)
	ctx := context.Background()
	eth0, err := n.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	local := &netlink.Route{LinkIndex: eth0.Attrs().Index, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_LOCAL,
		Dst: &net.IPNet{IP: net.ParseIP("2001:db8:77::1"), Mask: net.CIDRMask(128, 128)}}
	if err := n.h.RouteAdd(local); err != nil {
		t.Fatal(err)
	}
	if _, err := n.m.UpdateRoutes(ctx, &pb.Routes{Routes: []*pb.Route{{Dest: "10.1.2.0/24", Device: "eth0", Scope: unix.RT_SCOPE_LINK}}}); err != nil {
		t.Fatal(err)
	}
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_LOCAL}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.IP.Equal(local.Dst.IP) }) {
		t.Errorf("UpdateRoutes removed the local route of 2001:db8:77::1 from the main table: %v", rs)
	}
	listed, err := n.m.ListRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range listed {
		if strings.HasPrefix(r.Dest, "2001:db8:77::1") {
			t.Errorf("ListRoutes reports the local route %s", routeKey(r))
		}
	}
}
