package network

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	pb "github.com/virtcontainers/vc/api/agent"
)

// AddARPNeighbors adds (or replaces) static neighbour entries: ARP for
// IPv4 addresses, NDP for IPv6 ones. An entry's state defaults to
// NUD_PERMANENT; state and flags are otherwise passed to the kernel as
// given (they are the kernel's NUD_* and NTF_* values). Every entry is
// validated before any is added.
func (m *Manager) AddARPNeighbors(ctx context.Context, ns *pb.ARPNeighbors) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ns == nil {
		return invalid("neighbors", "missing")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	links, err := m.links()
	if err != nil {
		return err
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	type want struct {
		field string
		n     netlink.Neigh
	}
	var ws []want
	for i, n := range ns.ARPNeighbors {
		field := fmt.Sprintf("neighbors.ARPNeighbors[%d]", i)
		if n == nil {
			return invalid(field, "missing")
		}
		if n.ToIPAddress == nil {
			return invalid(field+".toIPAddress", "missing")
		}
		ip, err := parseIP(field+".toIPAddress.address", n.ToIPAddress.Address)
		if err != nil {
			return err
		}
		if err := checkFamily(field+".toIPAddress.family", n.ToIPAddress.Family, ip); err != nil {
			return err
		}
		mac, err := parseMAC(field+".lladdr", n.Lladdr)
		if err != nil {
			return err
		}
		if n.Device == "" {
			return invalid(field+".device", "missing")
		}
		l, ok := byName[n.Device]
		if !ok {
			return notFound(field+".device", "no link named %q", n.Device)
		}
		if n.State < 0 || n.State > 0xffff {
			return invalid(field+".state", "%d is not a neighbour state", n.State)
		}
		if n.Flags < 0 || n.Flags > 0xff {
			return invalid(field+".flags", "%d is not a set of neighbour flags", n.Flags)
		}
		state := int(n.State)
		if state == 0 {
			state = netlink.NUD_PERMANENT
		}
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		ws = append(ws, want{field: field, n: netlink.Neigh{
			LinkIndex:    l.Attrs().Index,
			Family:       fam,
			State:        state,
			Flags:        int(n.Flags),
			IP:           net.IP(ip.AsSlice()),
			HardwareAddr: mac,
		}})
	}
	for _, w := range ws {
		if err := m.h.NeighSet(&w.n); err != nil {
			return sysErr(fmt.Sprintf("%s: add neighbour %s lladdr %s", w.field, w.n.IP, w.n.HardwareAddr), err)
		}
	}
	m.log().Info("neighbours added", "count", len(ws))
	return nil
}
