package network

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	pb "github.com/virtcontainers/vc/api/agent"
)

// parseMAC parses a required MAC address.
func parseMAC(field, s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, invalid(field, "missing")
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, invalid(field, "%q is not a MAC address", s)
	}
	return mac, nil
}

// parseIP parses a required IPv4 or IPv6 address without zone. An
// IPv4-mapped IPv6 address is taken as the IPv4 address.
func parseIP(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, invalid(field, "missing")
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, invalid(field, "%q is not an IP address", s)
	}
	return ip.Unmap(), nil
}

// checkFamily checks that a message's family field agrees with ip. The
// field's zero value is v4, so it can only disagree when it says v6 (or
// is out of range).
func checkFamily(field string, f pb.IPFamily, ip netip.Addr) error {
	switch f {
	case pb.IPFamily_v4:
		return nil
	case pb.IPFamily_v6:
		if !ip.Is6() {
			return invalid(field, "v6 does not fit IPv4 address %s", ip)
		}
		return nil
	default:
		return invalid(field, "unknown IP family %d", int32(f))
	}
}

// parseAddress parses an address with its prefix length.
func parseAddress(field string, a *pb.IPAddress) (netip.Prefix, error) {
	if a == nil {
		return netip.Prefix{}, invalid(field, "missing")
	}
	ip, err := parseIP(field+".address", a.Address)
	if err != nil {
		return netip.Prefix{}, err
	}
	if err := checkFamily(field+".family", a.Family, ip); err != nil {
		return netip.Prefix{}, err
	}
	bits, err := parsePrefixLen(field+".mask", a.Mask, ip)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(ip, bits), nil
}

// parsePrefixLen parses a prefix length ("24") for an address of ip's
// family.
func parsePrefixLen(field, s string, ip netip.Addr) (int, error) {
	if s == "" {
		return 0, invalid(field, "missing prefix length")
	}
	n, err := strconv.Atoi(s)
	if err != nil || len(s) > 3 || strings.Trim(s, "0123456789") != "" || n > ip.BitLen() {
		return 0, invalid(field, "%q is not a prefix length between 0 and %d", s, ip.BitLen())
	}
	return n, nil
}

// parseDest parses a route destination: empty or "default" for the
// default route of the family, a CIDR, or a bare address (a host route).
// The result is masked (10.1.2.3/8 becomes 10.0.0.0/8), as the kernel wants.
// ok is false for the default route, whose family comes from elsewhere.
func parseDest(field, s string) (p netip.Prefix, ok bool, err error) {
	if s == "" || s == "default" {
		return netip.Prefix{}, false, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, false, invalid(field, "%q is not a destination (CIDR, address or empty for default)", s)
		}
		bits := p.Bits()
		if p.Addr().Is4In6() && bits >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), bits-96)
		}
		return p.Masked(), true, nil
	}
	ip, err := parseIP(field, s)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	return netip.PrefixFrom(ip, ip.BitLen()), true, nil
}

// validName applies the kernel's rules for link names (dev_valid_name).
func validName(s string) error {
	switch {
	case len(s) >= 16:
		return fmt.Errorf("%q is longer than 15 bytes", s)
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a link name", s)
	case strings.ContainsAny(s, "/: \t\n\v\f\r"):
		return fmt.Errorf("%q contains '/', ':' or white space", s)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func netIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

// fromIP converts a netlink address; ok is false for nil.
func fromIP(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func family(a netip.Addr) pb.IPFamily {
	if a.Is4() {
		return pb.IPFamily_v4
	}
	return pb.IPFamily_v6
}
