package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

// wantRoute is a validated route of an UpdateRoutes request.
type wantRoute struct {
	field string // routes.Routes[i]
	desc  string
	r     netlink.Route
}

// UpdateRoutes replaces the main routing table's routes on the guest's
// links (every link but loopback) with rs, and returns the routes then
// listed by ListRoutes.
//
// Routes without a gateway (link routes) are added before gateway routes,
// which may depend on them. The kernel's own IPv6 link-local and multicast
// routes (fe80::/64, ff00::/8, protocol kernel) are left alone, and an
// fe80::/64 link route in rs is skipped since the kernel owns it. Route
// flags other than RTNH_F_ONLINK are ignored (the kernel refuses to be
// given the ones it reports, such as RTNH_F_LINKDOWN). If adding a route
// fails, the previous routes are restored as far as possible.
func (m *Manager) UpdateRoutes(ctx context.Context, rs *pb.Routes) ([]*pb.Route, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if rs == nil {
		return nil, invalid("routes", "missing")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	links, err := m.links()
	if err != nil {
		return nil, err
	}
	byName := map[string]netlink.Link{}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
		byIndex[l.Attrs().Index] = l
	}
	var want []wantRoute
	for i, r := range rs.Routes {
		field := fmt.Sprintf("routes.Routes[%d]", i)
		nr, skip, err := parseRoute(field, r, byName)
		if err != nil {
			return nil, err
		}
		if skip {
			m.log().Debug("skipping kernel-owned route", "field", field, "dest", r.Dest, "device", r.Device)
			continue
		}
		want = append(want, wantRoute{field: field, desc: routeString(nr, byIndex), r: nr})
	}
	// Link routes first: a gateway must be reachable when its route is added.
	slices.SortStableFunc(want, func(a, b wantRoute) int {
		return boolInt(a.r.Gw != nil) - boolInt(b.r.Gw != nil)
	})

	old, err := m.mainRoutes()
	if err != nil {
		return nil, err
	}
	var deleted, added []netlink.Route
	for _, r := range old {
		if !replaceable(r, byIndex) {
			continue
		}
		if err := m.h.RouteDel(&r); err != nil {
			if errors.Is(err, unix.ESRCH) {
				continue // gone with a route deleted before it
			}
			m.restore(deleted, added, byIndex)
			return nil, sysErr(fmt.Sprintf("routes: remove route %s", routeString(r, byIndex)), err)
		}
		deleted = append(deleted, r)
	}
	for _, w := range want {
		if err := m.h.RouteReplace(&w.r); err != nil {
			m.restore(deleted, added, byIndex)
			return nil, sysErr(fmt.Sprintf("%s: add route %s", w.field, w.desc), err)
		}
		added = append(added, w.r)
	}
	m.log().Info("routes updated", "removed", len(deleted), "added", len(added))
	return m.listRoutes()
}

// restore undoes a failed UpdateRoutes as far as it can: it removes the
// routes added and puts back the ones removed.
func (m *Manager) restore(deleted, added []netlink.Route, byIndex map[int]netlink.Link) {
	for _, r := range added {
		if err := m.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			m.log().Warn("cannot remove route while rolling back", "route", routeString(r, byIndex), "err", err)
		}
	}
	// Link routes first again.
	slices.SortStableFunc(deleted, func(a, b netlink.Route) int {
		return boolInt(a.Gw != nil) - boolInt(b.Gw != nil)
	})
	for _, r := range deleted {
		r.Flags &^= unix.RTNH_F_DEAD | unix.RTNH_F_LINKDOWN
		if err := m.h.RouteReplace(&r); err != nil {
			m.log().Warn("cannot restore route while rolling back", "route", routeString(r, byIndex), "err", err)
		}
	}
}

// parseRoute validates a requested route. skip is true for a route the
// kernel owns (the IPv6 link-local fe80::/64 link route).
func parseRoute(field string, r *pb.Route, byName map[string]netlink.Link) (nr netlink.Route, skip bool, err error) {
	if r == nil {
		return nr, false, invalid(field, "missing")
	}
	if r.Device == "" {
		return nr, false, invalid(field+".device", "missing")
	}
	dst, hasDst, err := parseDest(field+".dest", r.Dest)
	if err != nil {
		return nr, false, err
	}
	var gw, src netip.Addr
	if r.Gateway != "" {
		if gw, err = parseIP(field+".gateway", r.Gateway); err != nil {
			return nr, false, err
		}
	}
	if r.Source != "" {
		if src, err = parseIP(field+".source", r.Source); err != nil {
			return nr, false, err
		}
	}
	var present []netip.Addr
	if hasDst {
		present = append(present, dst.Addr())
	}
	for _, a := range []netip.Addr{gw, src} {
		if a.IsValid() {
			present = append(present, a)
		}
	}
	var is6 bool
	switch {
	case len(present) > 0:
		is6 = present[0].Is6()
		for _, a := range present[1:] {
			if a.Is6() != is6 {
				return nr, false, invalid(field, "dest %q, gateway %q and source %q mix IPv4 and IPv6", r.Dest, r.Gateway, r.Source)
			}
		}
		if err := checkFamily(field+".family", r.Family, present[0]); err != nil {
			return nr, false, err
		}
	case r.Family == pb.IPFamily_v4:
	case r.Family == pb.IPFamily_v6:
		is6 = true
	default:
		return nr, false, invalid(field+".family", "unknown IP family %d", int32(r.Family))
	}
	if !hasDst {
		if is6 {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		} else {
			dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		}
	}
	if r.Scope > 255 {
		return nr, false, invalid(field+".scope", "%d is not a route scope (0-255)", r.Scope)
	}
	link, ok := byName[r.Device]
	if !ok {
		return nr, false, notFound(field+".device", "no link named %q", r.Device)
	}
	if is6 && !gw.IsValid() && dst == linkLocal64 {
		return nr, true, nil
	}
	return netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       ipNet(dst),
		Gw:        netIP(gw),
		Src:       netIP(src),
		Scope:     netlink.Scope(r.Scope),
		Flags:     int(r.Flags & unix.RTNH_F_ONLINK),
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  unix.RTPROT_BOOT,
		Type:      unix.RTN_UNICAST,
	}, false, nil
}

var (
	linkLocal64 = netip.MustParsePrefix("fe80::/64")
	linkLocal   = netip.MustParsePrefix("fe80::/10")
	multicast6  = netip.MustParsePrefix("ff00::/8")
)

// replaceable tells whether UpdateRoutes removes r: a route through a
// link other than loopback that is not one of the kernel's own IPv6
// link-local or multicast routes.
func replaceable(r netlink.Route, byIndex map[int]netlink.Link) bool {
	if r.Protocol == unix.RTPROT_KERNEL && r.Dst != nil {
		if p, ok := routeDst(r); ok && p.Addr().Is6() && (linkLocal.Overlaps(p) && p.Bits() >= 10 || multicast6.Overlaps(p) && p.Bits() >= 8) {
			return false
		}
	}
	onLink := func(index int) bool {
		l, ok := byIndex[index]
		return ok && !isLoopback(l)
	}
	if r.LinkIndex != 0 {
		return onLink(r.LinkIndex)
	}
	for _, hop := range r.MultiPath {
		if onLink(hop.LinkIndex) {
			return true
		}
	}
	return false
}

// ListRoutes returns the main routing table's routes through links other
// than loopback. Routes the protocol cannot express (multipath,
// blackhole, unreachable: no single link) are left out, as are the other
// tables: local, whose entries the kernel derives from addresses, and any
// policy routing table, since a Route has no table to say where it
// belongs.
func (m *Manager) ListRoutes(ctx context.Context) ([]*pb.Route, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.listRoutes()
}

func (m *Manager) listRoutes() ([]*pb.Route, error) {
	links, err := m.links()
	if err != nil {
		return nil, err
	}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	routes, err := m.mainRoutes()
	if err != nil {
		return nil, err
	}
	out := []*pb.Route{}
	for _, r := range routes {
		l, ok := byIndex[r.LinkIndex]
		if r.LinkIndex == 0 || !ok || isLoopback(l) {
			continue
		}
		out = append(out, toPBRoute(r, l.Attrs().Name))
	}
	return out, nil
}

// mainRoutes lists the main table's routes, without the ones the kernel
// derives from addresses (local, broadcast, anycast): a kernel without
// IPV6_MULTIPLE_TABLES keeps IPv6's local routes in the main table, and
// replacing the routes must not remove them (the guest would drop every
// packet to its own IPv6 addresses).
func (m *Manager) mainRoutes() ([]netlink.Route, error) {
	rs, err := retryDump(func() ([]netlink.Route, error) {
		return m.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return slices.DeleteFunc(rs, kernelDerived), nil
}

// kernelDerived tells a route the kernel makes for an address.
func kernelDerived(r netlink.Route) bool {
	switch r.Type {
	case unix.RTN_LOCAL, unix.RTN_BROADCAST, unix.RTN_ANYCAST:
		return true
	}
	return false
}

// routeDst returns r's destination; ok is false for the default route.
func routeDst(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	ip, ok := fromIP(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := r.Dst.Mask.Size()
	if bits == 128 && ip.Is4() {
		ones -= 96
	}
	if ones <= 0 || ones > ip.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones).Masked(), true
}

func toPBRoute(r netlink.Route, device string) *pb.Route {
	out := &pb.Route{
		Device: device,
		Scope:  uint32(r.Scope),
		Flags:  uint32(r.Flags),
	}
	if r.Family == unix.AF_INET6 {
		out.Family = pb.IPFamily_v6
	}
	if p, ok := routeDst(r); ok {
		out.Dest = p.String()
	}
	if gw, ok := fromIP(r.Gw); ok {
		out.Gateway = gw.String()
	}
	if src, ok := fromIP(r.Src); ok {
		out.Source = src.String()
	}
	return out
}

// routeString is a route in ip-route(8) style, for messages.
func routeString(r netlink.Route, byIndex map[int]netlink.Link) string {
	s := "default"
	if p, ok := routeDst(r); ok {
		s = p.String()
	}
	if gw, ok := fromIP(r.Gw); ok {
		s += " via " + gw.String()
	}
	if l, ok := byIndex[r.LinkIndex]; ok {
		s += " dev " + l.Attrs().Name
	}
	if src, ok := fromIP(r.Src); ok {
		s += " src " + src.String()
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
