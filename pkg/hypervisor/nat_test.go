package hypervisor

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestNATNICValidate(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:0a")
	ok := NATNIC{ID: "nat0", MAC: mac, Forwards: []PortForward{{HostPort: 8080, GuestPort: 80}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.Network != NATNetwork || ok.Gateway != NATGateway || ok.DNS != NATDNS || ok.GuestAddr != NATGuestAddr || ok.Forwards[0].Protocol != ProtoTCP {
		t.Errorf("defaults not filled in: %+v", ok)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	cases := []struct {
		name string
		mod  func(n *NATNIC)
		want string
	}{
		{"bad id", func(n *NATNIC) { n.ID = "" }, "nat nic id"},
		{"multicast mac", func(n *NATNIC) { n.MAC = net.HardwareAddr{1, 0, 0, 0, 0, 1} }, "MAC"},
		{"ipv6 network", func(n *NATNIC) { n.Network = netip.MustParsePrefix("fd00::/64") }, "network"},
		{"gateway outside", func(n *NATNIC) { n.Gateway = netip.MustParseAddr("10.0.3.2") }, "gateway 10.0.3.2 is not in network"},
		{"guest is dns", func(n *NATNIC) { n.GuestAddr = NATDNS }, "must differ"},
		{"host port 0", func(n *NATNIC) { n.Forwards = []PortForward{{GuestPort: 80}} }, "forwards[0]: host port 0"},
		{"guest port too big", func(n *NATNIC) { n.Forwards = []PortForward{{HostPort: 1, GuestPort: 65536}} }, "forwards[0]: guest port 65536"},
		{"protocol", func(n *NATNIC) { n.Forwards = []PortForward{{Protocol: "sctp", HostPort: 1, GuestPort: 1}} }, `protocol "sctp"`},
		{"ipv6 host", func(n *NATNIC) {
			n.Forwards = []PortForward{{HostAddr: netip.MustParseAddr("::1"), HostPort: 1, GuestPort: 1}}
		}, "only IPv4"},
		{"duplicate", func(n *NATNIC) {
			n.Forwards = []PortForward{{HostPort: 80, GuestPort: 80}, {HostAddr: lo, HostPort: 80, GuestPort: 81}}
		}, "forwards[1] 127.0.0.1:80:81/tcp: host port already forwarded by forwards[0]"},
		{"loopback resolver", func(n *NATNIC) { n.Resolvers = []netip.Addr{netip.MustParseAddr("127.0.0.53")} }, "resolvers[0]: resolver 127.0.0.53: a loopback address"},
		{"ipv6 resolver", func(n *NATNIC) {
			n.Resolvers = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
		}, "resolvers[1]: resolver 2001:db8::1: want an IPv4 address"},
		{"unspecified resolver", func(n *NATNIC) { n.Resolvers = []netip.Addr{netip.IPv4Unspecified()} }, "not a unicast address"},
		{"no resolver address", func(n *NATNIC) { n.Resolvers = []netip.Addr{{}} }, "resolvers[0]: resolver: no address"},
	}
	for _, tc := range cases {
		n := NATNIC{ID: "nat0", MAC: mac}
		tc.mod(&n)
		err := n.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
			continue
		}
		if !errdefs.IsInvalidArgument(err) && !errdefs.IsAlreadyExists(err) {
			t.Errorf("%s: %v is not an invalid-argument error", tc.name, err)
		}
	}
	// Same port, other protocol, or two distinct addresses: fine.
	n := NATNIC{ID: "nat0", MAC: mac, Forwards: []PortForward{
		{HostPort: 53, GuestPort: 53}, {Protocol: ProtoUDP, HostPort: 53, GuestPort: 53},
		{HostAddr: lo, HostPort: 90, GuestPort: 90}, {HostAddr: netip.MustParseAddr("127.0.0.2"), HostPort: 90, GuestPort: 91},
	}}
	if err := n.Validate(); err != nil {
		t.Error(err)
	}
	// A config's NAT NIC shares the NIC id space.
	c := Config{ID: "vm", StateDir: "/x", Kernel: "/k", NICs: []NIC{{ID: "nat0", TapName: "tap0", MAC: mac}}, NAT: &NATNIC{ID: "nat0", MAC: mac}}
	if err := c.Validate(); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate nic id: got %v", err)
	}
}
