package agent_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/network/netnstest"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestNetworkRPCs runs the real agent in a network namespace of the
// test's own, holding one tap link, and configures it over ttRPC.
func TestNetworkRPCs(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.AgentBinary(t) // built outside the namespace
	ns := netnstest.New(t)
	const mac = "02:00:00:00:10:01"
	netnstest.AddTap(t, ns, "tap1", mac)
	var a *testutil.Agent
	netnstest.Do(t, ns, func() { a = testutil.StartAgent(t) })
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The agent sees the namespace's links only: tap1, and lo, which
	// ListInterfaces leaves out.
	ifs, err := a.Svc.ListInterfaces(ctx, &pb.ListInterfacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs.Interfaces) != 1 || ifs.Interfaces[0].HwAddr != mac {
		t.Fatalf("ListInterfaces in the test namespace: %v", ifs.Interfaces)
	}

	got, err := a.Svc.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: &pb.Interface{
		HwAddr: mac,
		Name:   "eth0",
		Mtu:    1450,
		IPAddresses: []*pb.IPAddress{
			{Family: pb.IPFamily_v4, Address: "10.88.0.2", Mask: "16"},
			{Family: pb.IPFamily_v6, Address: "fd00:88::2", Mask: "64"},
		},
	}})
	if err != nil {
		t.Fatalf("UpdateInterface: %v", err)
	}
	if got.Name != "eth0" || got.Mtu != 1450 || got.HwAddr != mac {
		t.Errorf("UpdateInterface returned %v", got)
	}
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatalf("the link was not renamed: %v", err)
	}
	if l.Attrs().MTU != 1450 || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("eth0: MTU %d, flags %v", l.Attrs().MTU, l.Attrs().Flags)
	}
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, a := range as {
		addrs = append(addrs, a.IPNet.String())
	}
	for _, want := range []string{"10.88.0.2/16", "fd00:88::2/64"} {
		if !slices.Contains(addrs, want) {
			t.Errorf("eth0 addresses %v lack %s", addrs, want)
		}
	}

	ifs, err = a.Svc.ListInterfaces(ctx, &pb.ListInterfacesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs.Interfaces) != 1 || ifs.Interfaces[0].Name != "eth0" || len(ifs.Interfaces[0].IPAddresses) < 2 {
		t.Errorf("ListInterfaces after the update: %v", ifs.Interfaces)
	}

	rs, err := a.Svc.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: []*pb.Route{
		{Gateway: "10.88.0.1", Device: "eth0"},
		{Dest: "10.88.0.0/16", Device: "eth0", Scope: unix.RT_SCOPE_LINK, Source: "10.88.0.2"},
		{Gateway: "fd00:88::1", Device: "eth0", Family: pb.IPFamily_v6},
		{Dest: "fd00:88::/64", Device: "eth0", Family: pb.IPFamily_v6},
	}}})
	if err != nil {
		t.Fatalf("UpdateRoutes: %v", err)
	}
	listed, err := a.Svc.ListRoutes(ctx, &pb.ListRoutesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default via 10.88.0.1", "10.88.0.0/16 src 10.88.0.2", "default via fd00:88::1", "fd00:88::/64"} {
		for name, list := range map[string][]*pb.Route{"UpdateRoutes": rs.Routes, "ListRoutes": listed.Routes} {
			found := false
			for _, r := range list {
				s := r.Dest
				if s == "" {
					s = "default"
				}
				if r.Gateway != "" {
					s += " via " + r.Gateway
				}
				if r.Source != "" {
					s += " src " + r.Source
				}
				found = found || (s == want && r.Device == "eth0")
			}
			if !found {
				t.Errorf("%s lacks %q: %v", name, want, list)
			}
		}
	}

	if _, err := a.Svc.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: []*pb.ARPNeighbor{
		{ToIPAddress: &pb.IPAddress{Address: "10.88.0.1"}, Device: "eth0", Lladdr: "02:00:00:00:10:ff"},
	}}}); err != nil {
		t.Fatalf("AddARPNeighbors: %v", err)
	}
	neighs, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
		return n.IP.Equal(net.ParseIP("10.88.0.1")) && n.HardwareAddr.String() == "02:00:00:00:10:ff" && n.State == netlink.NUD_PERMANENT
	}) {
		t.Errorf("no permanent neighbour 10.88.0.1: %v", neighs)
	}

	// iptables, inside the namespace too (the agent's children inherit it).
	if _, err := a.Svc.SetIPTables(ctx, &pb.SetIPTablesRequest{Data: []byte("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.99.0.1/32 -j DROP\nCOMMIT\n")}); err != nil {
		t.Fatalf("SetIPTables: %v", err)
	}
	ipt, err := a.Svc.GetIPTables(ctx, &pb.GetIPTablesRequest{})
	if err != nil {
		t.Fatalf("GetIPTables: %v", err)
	}
	if !strings.Contains(string(ipt.Data), "*filter") || !strings.Contains(string(ipt.Data), "10.99.0.1/32") {
		t.Errorf("GetIPTables after SetIPTables: %q", ipt.Data)
	}

	// Errors arrive with their codes and name the field.
	for _, c := range []struct {
		req   *pb.Interface
		code  codes.Code
		field string
	}{
		{&pb.Interface{}, codes.InvalidArgument, "interface.hwAddr"},
		{&pb.Interface{HwAddr: "02:00:00:00:10:02"}, codes.NotFound, "interface.hwAddr"},
		{&pb.Interface{HwAddr: mac, IPAddresses: []*pb.IPAddress{{Address: "10.88.0.2", Mask: "40"}}}, codes.InvalidArgument, "interface.IPAddresses[0].mask"},
	} {
		_, err := a.Svc.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: c.req})
		if s, _ := status.FromError(err); s.Code() != c.code || !strings.Contains(s.Message(), c.field) {
			t.Errorf("UpdateInterface(%v): %v, want %v naming %s", c.req, err, c.code, c.field)
		}
	}
	_, err = a.Svc.SetIPTables(ctx, &pb.SetIPTablesRequest{Data: []byte("*filter\n-A NOCHAIN -j FOO\nCOMMIT\n")})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("SetIPTables with bad rules: %v, want InvalidArgument", err)
	}
}
