// Package network connects a sandbox VM to the network namespace a CNI
// plugin (or anyone) prepared: every link of the namespace is discovered
// with its addresses, routes and neighbours, and paired with a tap device
// created in the same namespace, traffic moved between the two by tc
// ingress qdiscs with mirred redirect filters (Kata's "tcfilter" model), or
// with a macvtap on the link. The VM's NIC takes the link's MAC address, so
// the guest takes the link's identity.
package network

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is a route of the namespace's main table through one endpoint.
type Route struct {
	// Dst is the destination; the zero Prefix is the default route.
	Dst     netip.Prefix `json:"dst,omitzero"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	Src     netip.Addr   `json:"src,omitzero"`
	Scope   uint8        `json:"scope,omitempty"`
	Family  int          `json:"family"` // unix.AF_INET or AF_INET6
	Flags   int          `json:"flags,omitempty"`
}

// Neighbor is a permanent ARP or NDP entry of the namespace.
type Neighbor struct {
	IP    netip.Addr `json:"ip"`
	MAC   string     `json:"mac"`
	State int        `json:"state"`
	Flags int        `json:"flags,omitempty"`
}

// Endpoint is one link of the namespace and what was made for it.
type Endpoint struct {
	// Name, MAC and MTU of the link in the namespace.
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
	MAC  string `json:"mac"`
	MTU  int    `json:"mtu"`
	// Addrs are its addresses, IPv6 link-local ones left out.
	Addrs     []netip.Prefix `json:"addrs,omitempty"`
	Routes    []Route        `json:"routes,omitempty"`
	Neighbors []Neighbor     `json:"neighbors,omitempty"`

	// Set by Setup.
	Model Model `json:"model,omitempty"`
	// Tap is the tap (tcfilter) or macvtap device Setup created.
	Tap string `json:"tap,omitempty"`
	// LinkQdisc: Setup added an ingress qdisc to the link (tcfilter).
	LinkQdisc bool `json:"link_qdisc,omitempty"`
	// NetNS is a Bridge endpoint's namespace (its bridge's), where Tap is.
	NetNS string `json:"netns,omitempty"`
	// GuestName is the link's name in the guest (eth0, ...).
	GuestName string `json:"guest_name,omitempty"`
}

// Discover lists the links of the namespace at path (but loopback), with
// their addresses, routes and permanent neighbours.
func Discover(path string) ([]Endpoint, error) {
	ns, err := openNS(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns %q: netlink: %w", path, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netns %q: list links: %w", path, err)
	}
	var eps []Endpoint
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || l.Type() == "tuntap" || l.Type() == "macvtap" {
			continue
		}
		ep, err := describe(h, l)
		if err != nil {
			return nil, fmt.Errorf("netns %q: %w", path, err)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// DiscoverLink describes one link of the namespace at path.
func DiscoverLink(path, name string) (Endpoint, error) {
	ns, err := openNS(path)
	if err != nil {
		return Endpoint{}, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return Endpoint{}, fmt.Errorf("netns %q: netlink: %w", path, err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return Endpoint{}, fmt.Errorf("netns %q: link %q: %w", path, name, err)
	}
	if l.Attrs().Flags&net.FlagLoopback != 0 {
		return Endpoint{}, fmt.Errorf("netns %q: link %q is a loopback link", path, name)
	}
	ep, err := describe(h, l)
	if err != nil {
		return Endpoint{}, fmt.Errorf("netns %q: %w", path, err)
	}
	return ep, nil
}

func describe(h *netlink.Handle, l netlink.Link) (Endpoint, error) {
	a := l.Attrs()
	ep := Endpoint{Name: a.Name, Type: l.Type(), MAC: a.HardwareAddr.String(), MTU: a.MTU}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return ep, fmt.Errorf("link %s: addresses: %w", a.Name, err)
	}
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() && ip.Is6() {
			continue
		}
		ones, _ := ad.Mask.Size()
		ep.Addrs = append(ep.Addrs, netip.PrefixFrom(ip, ones))
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: a.Index, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return ep, fmt.Errorf("link %s: routes: %w", a.Name, err)
	}
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST && r.Type != 0 {
			continue
		}
		rt := Route{Scope: uint8(r.Scope), Family: r.Family, Flags: r.Flags & unix.RTNH_F_ONLINK}
		if r.Dst != nil {
			ip, _ := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			if ones > 0 {
				rt.Dst = netip.PrefixFrom(ip.Unmap(), ones)
			}
			if rt.Dst.Addr().Is6() && (rt.Dst.Addr().IsLinkLocalUnicast() || rt.Dst.Addr().IsMulticast()) {
				continue
			}
		}
		if r.Gw != nil {
			rt.Gateway, _ = netip.AddrFromSlice(r.Gw)
			rt.Gateway = rt.Gateway.Unmap()
		}
		if r.Src != nil {
			rt.Src, _ = netip.AddrFromSlice(r.Src)
			rt.Src = rt.Src.Unmap()
		}
		ep.Routes = append(ep.Routes, rt)
	}
	neighs, err := h.NeighList(a.Index, netlink.FAMILY_ALL)
	if err != nil {
		return ep, fmt.Errorf("link %s: neighbours: %w", a.Name, err)
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 || n.HardwareAddr == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ep.Neighbors = append(ep.Neighbors, Neighbor{IP: ip.Unmap(), MAC: n.HardwareAddr.String(), State: n.State, Flags: n.Flags})
	}
	slices.SortFunc(ep.Addrs, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	return ep, nil
}
