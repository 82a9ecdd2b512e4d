package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

// UpdateInterface configures the link whose MAC address is iface.HwAddr:
// it renames it to iface.Name (when given), sets its MTU (when not 0) and
// its ARP flag (from iface.RawFlags' IFF_NOARP), replaces its addresses
// with iface.IPAddresses and sets it up. It returns the link as it then
// is.
//
// Addresses are replaced in place, but for IPv6 link-local addresses,
// which are kept (NDP needs one; the kernel made it). A rename needs the
// link down, which makes the kernel drop its routes and IPv6 addresses
// and regenerate the link-local address when it comes back up: the host
// sends UpdateRoutes after UpdateInterface, as with Kata. IPv6 addresses
// are added without duplicate address detection (IFA_F_NODAD): they were
// handed out by the host's network, and a tentative address cannot be a
// route's source. Loopback links are never matched. Every field is
// validated before anything changes; a failure of the kernel midway is
// undone but for the addresses.
func (m *Manager) UpdateInterface(ctx context.Context, iface *pb.Interface) (*pb.Interface, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if iface == nil {
		return nil, invalid("interface", "missing")
	}
	mac, err := parseMAC("interface.hwAddr", iface.HwAddr)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Prefix
	for i, a := range iface.IPAddresses {
		p, err := parseAddress(fmt.Sprintf("interface.IPAddresses[%d]", i), a)
		if err != nil {
			return nil, err
		}
		if !containsPrefix(addrs, p) {
			addrs = append(addrs, p)
		}
	}
	if iface.Name != "" {
		if err := validName(iface.Name); err != nil {
			return nil, invalid("interface.name", "%v", err)
		}
	}
	if iface.Mtu > math.MaxInt32 {
		return nil, invalid("interface.mtu", "%d is too large", iface.Mtu)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	links, err := m.links()
	if err != nil {
		return nil, err
	}
	var link netlink.Link
	for _, l := range links {
		if !isLoopback(l) && bytes.Equal(l.Attrs().HardwareAddr, mac) {
			link = l
			break
		}
	}
	if link == nil {
		return nil, notFound("interface.hwAddr", "no link has MAC address %s", mac)
	}
	if iface.Name != "" && iface.Name != link.Attrs().Name {
		for _, l := range links {
			if l.Attrs().Name == iface.Name {
				return nil, fmt.Errorf("interface.name: cannot rename link %s: another link is named %s: %w",
					link.Attrs().Name, iface.Name, errdefs.ErrAlreadyExists)
			}
		}
	}
	if err := m.configure(link, iface, addrs); err != nil {
		return nil, err
	}
	m.log().Info("interface updated", "mac", mac.String(), "name", iface.Name, "mtu", iface.Mtu, "addresses", len(addrs))
	updated, err := m.h.LinkByIndex(link.Attrs().Index)
	if err != nil {
		return nil, sysErr(fmt.Sprintf("interface: read back link %d", link.Attrs().Index), err)
	}
	return m.describe(updated)
}

// configure applies iface to link. The MTU goes first, while nothing else
// has changed, since it is what the kernel is likeliest to refuse. A
// rename needs the link down. If a later step fails, the name, the MTU
// and the up state are put back.
func (m *Manager) configure(link netlink.Link, iface *pb.Interface, addrs []netip.Prefix) (err error) {
	attrs := *link.Attrs()
	name := attrs.Name
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if e := undo[i](); e != nil {
				m.log().Warn("cannot undo part of a failed interface update", "link", attrs.Name, "err", e)
			}
		}
	}()
	if iface.Mtu != 0 && int(iface.Mtu) != attrs.MTU {
		if err := m.h.LinkSetMTU(link, int(iface.Mtu)); err != nil {
			return sysErr(fmt.Sprintf("interface.mtu: set MTU of %s to %d", name, iface.Mtu), err)
		}
		undo = append(undo, func() error { return m.h.LinkSetMTU(link, attrs.MTU) })
	}
	if iface.Name != "" && iface.Name != name {
		if attrs.Flags&net.FlagUp != 0 {
			if err := m.h.LinkSetDown(link); err != nil {
				return sysErr(fmt.Sprintf("interface: set link %s down to rename it", name), err)
			}
			undo = append(undo, func() error { return m.h.LinkSetUp(link) })
		}
		if err := m.h.LinkSetName(link, iface.Name); err != nil {
			return sysErr(fmt.Sprintf("interface.name: rename link %s to %s", name, iface.Name), err)
		}
		undo = append(undo, func() error { return m.h.LinkSetName(link, attrs.Name) })
		name = iface.Name
	}
	if want, have := iface.RawFlags&unix.IFF_NOARP != 0, attrs.RawFlags&unix.IFF_NOARP != 0; want != have {
		set := m.h.LinkSetARPOn
		if want {
			set = m.h.LinkSetARPOff
		}
		if err := set(link); err != nil {
			return sysErr(fmt.Sprintf("interface.raw_flags: set NOARP=%v on %s", want, name), err)
		}
	}

	current, err := retryDump(func() ([]netlink.Addr, error) { return m.h.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return sysErr(fmt.Sprintf("interface: list addresses of %s", name), err)
	}
	var have []netip.Prefix
	for _, a := range current {
		p, ok := addrPrefix(a)
		if ok && (containsPrefix(addrs, p) || p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()) {
			// Wanted, or the IPv6 link-local address NDP needs.
			have = append(have, p)
			continue
		}
		if err := m.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return sysErr(fmt.Sprintf("interface: remove address %s from %s", a.IPNet, name), err)
		}
	}
	for i, p := range addrs {
		if containsPrefix(have, p) {
			continue
		}
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := m.h.AddrAdd(link, a); err != nil {
			return sysErr(fmt.Sprintf("interface.IPAddresses[%d]: add %s to %s", i, p, name), err)
		}
	}
	if err := m.h.LinkSetUp(link); err != nil {
		return sysErr(fmt.Sprintf("interface: set link %s up", name), err)
	}
	return nil
}

// ListInterfaces describes every link but the loopback ones.
func (m *Manager) ListInterfaces(ctx context.Context) ([]*pb.Interface, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	links, err := m.links()
	if err != nil {
		return nil, err
	}
	var out []*pb.Interface
	for _, l := range links {
		if isLoopback(l) {
			continue
		}
		d, err := m.describe(l)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// describe turns a link and its addresses into the protocol's Interface.
// Device and Name are both the link's name.
func (m *Manager) describe(l netlink.Link) (*pb.Interface, error) {
	attrs := l.Attrs()
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return m.h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, sysErr(fmt.Sprintf("list addresses of %s", attrs.Name), err)
	}
	out := &pb.Interface{
		Device:   attrs.Name,
		Name:     attrs.Name,
		Mtu:      uint64(attrs.MTU),
		HwAddr:   attrs.HardwareAddr.String(),
		Type:     l.Type(),
		RawFlags: attrs.RawFlags,
	}
	for _, a := range addrs {
		p, ok := addrPrefix(a)
		if !ok {
			continue
		}
		out.IPAddresses = append(out.IPAddresses, &pb.IPAddress{
			Family:  family(p.Addr()),
			Address: p.Addr().String(),
			Mask:    strconv.Itoa(p.Bits()),
		})
	}
	return out, nil
}

// addrPrefix turns a netlink address into address/prefix length.
func addrPrefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := fromIP(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := a.Mask.Size()
	if bits == 128 && ip.Is4() {
		ones -= 96
	}
	if ones < 0 || ones > ip.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones), true
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
