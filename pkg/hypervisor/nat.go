package hypervisor

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containerd/errdefs"
)

// NATNIC is a network interface whose backend is a user-mode network
// stack (qemu: a passt per VM, see qemu/passt.go): the guest's
// connections leave through the stack's sockets on the host, so they
// come from the host's address, without a tap, a namespace or privileges.
// Host ports can be forwarded to the guest (Forwards).
//
// The stack simulates a small network: the guest takes GuestAddr
// statically (the stack also answers DHCP with it), Gateway is the
// guest's router, which must NOT map to the host's loopback (passt runs
// with --no-map-gw; QEMU's libslirp maps it and is not used), and DNS is
// the stack's resolver address: DNS queries to it go to Resolvers[0], or,
// without Resolvers, to the host's resolver (the first nameserver of the
// host's /etc/resolv.conf; a loopback one, such as systemd-resolved's
// 127.0.0.53, does not answer: the stack does not reach the host's
// loopback, so name Resolvers on such a host).
//
// A NAT NIC is present at boot (Config.NAT); it is not hotplugged.
type NATNIC struct {
	// ID names the device (required).
	ID string
	// MAC is the guest side address (required): the guest finds the NIC
	// by it.
	MAC net.HardwareAddr
	// Network is the simulated network; default NATNetwork.
	Network netip.Prefix
	// Gateway, DNS and GuestAddr lie in Network; defaults NATGateway,
	// NATDNS and NATGuestAddr.
	Gateway   netip.Addr
	DNS       netip.Addr
	GuestAddr netip.Addr
	// Resolvers are the upstream resolvers the stack sends the guest's
	// DNS queries (UDP to DNS, port 53) to instead of the host's; the
	// first is used. IPv4 addresses, not the host's loopback. (qemu:
	// passt reads them from an /etc/resolv.conf bound in a mount
	// namespace of its own, which needs CAP_SYS_ADMIN.)
	Resolvers []netip.Addr
	// Forwards publish host ports: a connection (or datagram) to HostAddr:
	// HostPort on the host is forwarded to GuestAddr:GuestPort.
	Forwards []PortForward
	// HostLoopback maps Gateway to the host's loopback (passt without
	// --no-map-gw): the guest reaches every service of the host's
	// 127.0.0.1 at Gateway. Off unless asked for.
	HostLoopback bool
}

// The user-mode stack's defaults (those of QEMU's libslirp and
// slirp4netns, kept for the guest's configuration).
var (
	NATNetwork   = netip.MustParsePrefix("10.0.2.0/24")
	NATGateway   = netip.MustParseAddr("10.0.2.2")
	NATDNS       = netip.MustParseAddr("10.0.2.3")
	NATGuestAddr = netip.MustParseAddr("10.0.2.15")
)

// Protocols of a PortForward.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// PortForward publishes a host port to a guest port.
type PortForward struct {
	// Protocol is ProtoTCP (default) or ProtoUDP.
	Protocol string
	// HostAddr is the host address to listen on; the zero Addr for every
	// IPv4 address of the host. IPv4 only.
	HostAddr netip.Addr
	// HostPort and GuestPort are 1-65535.
	HostPort  int
	GuestPort int
}

// String renders f as [ADDR:]HOSTPORT:GUESTPORT/PROTO.
func (f PortForward) String() string {
	s := fmt.Sprintf("%d:%d/%s", f.HostPort, f.GuestPort, f.Protocol)
	if f.HostAddr.IsValid() {
		s = f.HostAddr.String() + ":" + s
	}
	return s
}

// Validate checks f and fills in the default protocol.
func (f *PortForward) Validate() error {
	switch f.Protocol {
	case "":
		f.Protocol = ProtoTCP
	case ProtoTCP, ProtoUDP:
	default:
		return fmt.Errorf("protocol %q: want tcp or udp: %w", f.Protocol, errdefs.ErrInvalidArgument)
	}
	if f.HostAddr.IsValid() && !f.HostAddr.Is4() {
		return fmt.Errorf("host address %s: only IPv4 is supported: %w", f.HostAddr, errdefs.ErrInvalidArgument)
	}
	if f.HostPort < 1 || f.HostPort > 65535 {
		return fmt.Errorf("host port %d: want 1-65535: %w", f.HostPort, errdefs.ErrInvalidArgument)
	}
	if f.GuestPort < 1 || f.GuestPort > 65535 {
		return fmt.Errorf("guest port %d: want 1-65535: %w", f.GuestPort, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Validate checks n and fills in the defaults.
func (n *NATNIC) Validate() error {
	if !idPattern.MatchString(n.ID) {
		return fmt.Errorf("nat nic id %q: want letters, digits, '.', '_' or '-': %w", n.ID, errdefs.ErrInvalidArgument)
	}
	if len(n.MAC) != 6 || n.MAC[0]&1 != 0 {
		return fmt.Errorf("nat nic %s: MAC %q is not a unicast 48-bit address: %w", n.ID, n.MAC, errdefs.ErrInvalidArgument)
	}
	if !n.Network.IsValid() {
		n.Network = NATNetwork
	}
	if !n.Network.Addr().Is4() || n.Network.Bits() > 30 {
		return fmt.Errorf("nat nic %s: network %s: want an IPv4 network of 4 addresses or more: %w", n.ID, n.Network, errdefs.ErrInvalidArgument)
	}
	n.Network = n.Network.Masked()
	for _, a := range []struct {
		name string
		addr *netip.Addr
		def  netip.Addr
	}{{"gateway", &n.Gateway, NATGateway}, {"dns", &n.DNS, NATDNS}, {"guest address", &n.GuestAddr, NATGuestAddr}} {
		if !a.addr.IsValid() {
			*a.addr = a.def
		}
		if !n.Network.Contains(*a.addr) {
			return fmt.Errorf("nat nic %s: %s %s is not in network %s: %w", n.ID, a.name, *a.addr, n.Network, errdefs.ErrInvalidArgument)
		}
	}
	if n.Gateway == n.DNS || n.Gateway == n.GuestAddr || n.DNS == n.GuestAddr {
		return fmt.Errorf("nat nic %s: gateway %s, dns %s and guest address %s must differ: %w", n.ID, n.Gateway, n.DNS, n.GuestAddr, errdefs.ErrInvalidArgument)
	}
	for i, r := range n.Resolvers {
		if err := CheckResolver(r); err != nil {
			return fmt.Errorf("nat nic %s: resolvers[%d]: %w", n.ID, i, err)
		}
	}
	for i := range n.Forwards {
		f := &n.Forwards[i]
		if err := f.Validate(); err != nil {
			return fmt.Errorf("nat nic %s: forwards[%d]: %w", n.ID, i, err)
		}
		// One host port per protocol and address; no address means
		// every address, which overlaps them all.
		for j, g := range n.Forwards[:i] {
			if g.Protocol == f.Protocol && g.HostPort == f.HostPort && (!f.HostAddr.IsValid() || !g.HostAddr.IsValid() || f.HostAddr == g.HostAddr) {
				return fmt.Errorf("nat nic %s: forwards[%d] %s: host port already forwarded by forwards[%d] %s: %w", n.ID, i, f, j, g, errdefs.ErrAlreadyExists)
			}
		}
	}
	return nil
}

// CheckResolver checks that a is an address the NAT can send DNS queries
// to: a unicast IPv4 address, not a loopback one (the NAT does not reach
// the host's loopback, by design).
func CheckResolver(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("resolver: no address: %w", errdefs.ErrInvalidArgument)
	case !a.Is4():
		return fmt.Errorf("resolver %s: want an IPv4 address (the NAT is IPv4 only): %w", a, errdefs.ErrInvalidArgument)
	case a.IsLoopback():
		return fmt.Errorf("resolver %s: a loopback address: the NAT does not reach the host's loopback: %w", a, errdefs.ErrInvalidArgument)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("resolver %s: not a unicast address: %w", a, errdefs.ErrInvalidArgument)
	}
	return nil
}
