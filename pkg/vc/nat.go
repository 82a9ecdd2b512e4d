package vc

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// A sandbox without a network namespace (SandboxConfig.NetNS empty) gets
// outbound network through the hypervisor's user-mode NAT (qemu: a passt
// per VM with --no-map-gw, so the host's loopback is not reachable unless
// NAT.HostLoopback),
// unless NAT.Disabled: one NIC, eth0 in the guest, with
// the address NATGuestAddr, a default route through NATGateway and
// NATDNS as its resolver. Published ports are forwarded by the hypervisor
// from the host to that address. The NAT's resources (passt, its socket)
// belong to the hypervisor's VM and end with it, so pkg/vc tears nothing
// down.

// NAT addresses as the guest sees them (the hypervisor package's
// defaults). NATGateway is the guest's router, not the host: a
// connection to it does not reach the host's loopback.
var (
	NATNetwork   = hypervisor.NATNetwork
	NATGateway   = hypervisor.NATGateway
	NATDNS       = hypervisor.NATDNS
	NATGuestAddr = hypervisor.NATGuestAddr
)

// natNICID and natGuestName name the NAT NIC on the host and in the guest;
// natMAC is its address (every sandbox's NAT is a network of its own).
const (
	natNICID     = "nat0"
	natGuestName = "eth0"
	natMAC       = "52:54:00:12:34:56"
)

// NATConfig is the user-mode NAT of a sandbox without a network namespace.
type NATConfig struct {
	// Disabled leaves the sandbox with loopback only (`--network none`).
	Disabled bool `json:"disabled,omitempty"`
	// Publish forwards host ports to the guest.
	Publish []PortMapping `json:"publish,omitempty"`
	// DNS are the upstream resolvers the guest's resolver (NATDNS)
	// forwards queries to, as docker's --dns; the first one answers.
	// Empty: the host's resolver, the first nameserver of the host's
	// /etc/resolv.conf (a loopback one, such as systemd-resolved's
	// 127.0.0.53, does not answer: the NAT does not reach the host's
	// loopback). IPv4 addresses, not loopback ones. Naming them needs
	// CAP_SYS_ADMIN (passt reads them from an /etc/resolv.conf of its own
	// mount namespace), and such a sandbox never takes a factory's
	// cached VM.
	DNS []netip.Addr `json:"dns,omitempty"`
	// HostLoopback lets the guest reach the host's loopback: every
	// service of the host's 127.0.0.1 at NATGateway, and, through
	// Sandbox.ShareLoopback, the ports the host listens on at the guest's
	// own 127.0.0.1. Off by default: services bound to the host's
	// loopback trust their clients to be the host's own processes (see
	// docs/containerd.md). Such a sandbox never takes a factory's cached
	// VM.
	HostLoopback bool `json:"host_loopback,omitempty"`
}

// PortMapping publishes a container port on the host: connections (or
// datagrams) to HostIP:HostPort reach the guest's ContainerPort, where a
// container of the sandbox listens (the containers share the guest's
// network).
type PortMapping struct {
	// HostIP is the IPv4 address to listen on; empty for every address
	// of the host (as docker's -p).
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
	// Protocol is tcp (default) or udp.
	Protocol string `json:"protocol,omitempty"`
}

// String renders m as ParsePortMapping reads it.
func (m PortMapping) String() string {
	s := fmt.Sprintf("%d:%d", m.HostPort, m.ContainerPort)
	if m.HostIP != "" {
		s = m.HostIP + ":" + s
	}
	if m.Protocol != "" && m.Protocol != hypervisor.ProtoTCP {
		s += "/" + m.Protocol
	}
	return s
}

// ParsePortMapping reads docker's -p syntax, [HOSTIP:]HOSTPORT:CONTAINERPORT
// with an optional /tcp or /udp.
func ParsePortMapping(s string) (PortMapping, error) {
	var m PortMapping
	bad := func(why string) (PortMapping, error) {
		return PortMapping{}, fmt.Errorf("%q: %s (want [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]): %w", s, why, errdefs.ErrInvalidArgument)
	}
	rest := strings.TrimSpace(s)
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		m.Protocol = rest[i+1:]
		rest = rest[:i]
		if m.Protocol != hypervisor.ProtoTCP && m.Protocol != hypervisor.ProtoUDP {
			return bad(fmt.Sprintf("protocol %q: want tcp or udp", m.Protocol))
		}
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		m.HostIP = parts[0]
		parts = parts[1:]
	default:
		return bad("not two or three fields separated by ':'")
	}
	if m.HostIP != "" {
		a, err := netip.ParseAddr(m.HostIP)
		if err != nil || !a.Is4() {
			return bad(fmt.Sprintf("host address %q: want an IPv4 address", m.HostIP))
		}
	}
	for i, f := range []*int{&m.HostPort, &m.ContainerPort} {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("%s %q: want a number from 1 to 65535", []string{"host port", "container port"}[i], parts[i]))
		}
		*f = n
	}
	return m, nil
}

// ParsePortMappings reads a comma-separated list of ParsePortMapping's
// forms (the publish annotation); the error names the entry.
func ParsePortMappings(s string) ([]PortMapping, error) {
	var out []PortMapping
	for i, e := range strings.Split(s, ",") {
		if strings.TrimSpace(e) == "" {
			continue
		}
		m, err := ParsePortMapping(e)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// NATEnabled tells whether the sandbox gets the user-mode NAT.
func (c *SandboxConfig) NATEnabled() bool { return c.NetNS == "" && !c.NAT.Disabled }

// natNIC is the NAT NIC the hypervisor is asked for, nil for none.
func (c *SandboxConfig) natNIC() (*hypervisor.NATNIC, error) {
	if !c.NATEnabled() {
		return nil, nil
	}
	mac, _ := net.ParseMAC(natMAC)
	n := &hypervisor.NATNIC{ID: natNICID, MAC: mac, HostLoopback: c.NAT.HostLoopback}
	for i, m := range c.NAT.Publish {
		f := hypervisor.PortForward{Protocol: m.Protocol, HostPort: m.HostPort, GuestPort: m.ContainerPort}
		if m.HostIP != "" {
			a, err := netip.ParseAddr(m.HostIP)
			if err != nil {
				return nil, fmt.Errorf("nat.publish[%d] %s: host address: %w: %w", i, m, err, errdefs.ErrInvalidArgument)
			}
			f.HostAddr = a
		}
		n.Forwards = append(n.Forwards, f)
	}
	for i, a := range c.NAT.DNS {
		if err := hypervisor.CheckResolver(a); err != nil {
			return nil, fmt.Errorf("nat.dns[%d]: %w", i, err)
		}
	}
	n.Resolvers = append(n.Resolvers, c.NAT.DNS...)
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("nat.publish: %w", err)
	}
	return n, nil
}

// validateNAT checks the NAT settings and that every published host port
// can be bound now, so that a port in use is refused, naming it, before
// anything is made. (QEMU binds them again when it starts; a port taken
// in between fails the start, with QEMU's message.)
func (c *SandboxConfig) validateNAT() error {
	if len(c.NAT.Publish) == 0 && len(c.NAT.DNS) == 0 && !c.NAT.HostLoopback {
		return nil
	}
	field := "nat.publish"
	switch {
	case len(c.NAT.Publish) > 0:
	case len(c.NAT.DNS) > 0:
		field = "nat.dns"
	default:
		field = "nat.host_loopback"
	}
	switch {
	case c.NetNS != "":
		return fmt.Errorf("%s: the sandbox joins network namespace %s, which has no NAT (publish ports and run resolvers in that namespace): %w", field, c.NetNS, errdefs.ErrInvalidArgument)
	case c.NAT.Disabled:
		return fmt.Errorf("%s: the NAT is disabled (network none): %w", field, errdefs.ErrInvalidArgument)
	}
	n, err := c.natNIC()
	if err != nil {
		return err
	}
	for i, f := range n.Forwards {
		if err := probePort(f); err != nil {
			return fmt.Errorf("nat.publish[%d] %s: %w", i, c.NAT.Publish[i], err)
		}
	}
	return nil
}

// probePort binds the forward's host address and port and lets go.
func probePort(f hypervisor.PortForward) error {
	host := "0.0.0.0"
	if f.HostAddr.IsValid() {
		host = f.HostAddr.String()
	}
	addr := net.JoinHostPort(host, strconv.Itoa(f.HostPort))
	if f.Protocol == hypervisor.ProtoUDP {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return fmt.Errorf("host port: %w: %w", err, errdefs.ErrFailedPrecondition)
		}
		return c.Close()
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return fmt.Errorf("host port: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return l.Close()
}

// configureNAT gives the guest's NAT NIC its address, the routes through
// it (the link's network, the default route via the gateway).
func (s *Sandbox) configureNAT(ctx context.Context) error {
	if err := ConfigureGuestNAT(ctx, s.agent); err != nil {
		return err
	}
	s.log.Info("nat configured", "guest", natGuestName, "addr", NATGuestAddr, "gateway", NATGateway, "dns", NATDNS, "upstream_dns", fmt.Sprint(s.status.Config.NAT.DNS), "publish", fmt.Sprint(s.status.Config.NAT.Publish))
	return nil
}

// ConfigureGuestNAT is configureNAT's agent calls: the same in every
// sandbox (a factory's template makes them once for all of its VMs).
func ConfigureGuestNAT(ctx context.Context, a pb.AgentServiceService) error {
	prefix := NATNetwork.Bits()
	iface := &pb.Interface{Device: natGuestName, Name: natGuestName, HwAddr: natMAC, Mtu: 1500,
		IPAddresses: []*pb.IPAddress{ipAddress(NATGuestAddr, prefix)}}
	if _, err := a.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: iface}); err != nil {
		return fmt.Errorf("agent UpdateInterface %s (nat, mac %s): %w", natGuestName, natMAC, err)
	}
	if _, err := a.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: natRoutes()}}); err != nil {
		return fmt.Errorf("agent UpdateRoutes (nat): %w", err)
	}
	return nil
}

// natRoutes are the guest's routes through the NAT NIC: its network and
// the default route.
func natRoutes() []*pb.Route {
	return []*pb.Route{
		{Dest: NATNetwork.String(), Device: natGuestName, Source: NATGuestAddr.String(), Scope: 253, Family: pb.IPFamily_v4}, // RT_SCOPE_LINK
		{Gateway: NATGateway.String(), Device: natGuestName, Family: pb.IPFamily_v4},
	}
}
