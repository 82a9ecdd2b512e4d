package vc

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
)

// Interface is a network interface of the guest.
type Interface struct {
	// Name is the link's name in the guest (eth0).
	Name string
	MAC  string
	MTU  uint64
	// Addrs are its addresses with their prefix lengths.
	Addrs []netip.Prefix
	// Type is the NIC's model where the host made it (tcfilter, macvtap).
	Type string
}

// Route is a route of the guest. A zero Dest is the default route.
type Route struct {
	Dest    netip.Prefix
	Gateway netip.Addr
	Source  netip.Addr
	// Device is the guest link the route goes out of.
	Device string
	// Scope is the kernel's route scope (0 universe, 253 link).
	Scope uint32
	Flags uint32
}

func interfaceFromProto(i *pb.Interface) Interface {
	out := Interface{Name: i.GetName(), MAC: i.GetHwAddr(), MTU: i.GetMtu(), Type: i.GetType()}
	for _, a := range i.GetIPAddresses() {
		ip, err := netip.ParseAddr(a.GetAddress())
		if err != nil {
			continue
		}
		bits, err := strconv.Atoi(a.GetMask())
		if err != nil {
			bits = ip.BitLen()
		}
		out.Addrs = append(out.Addrs, netip.PrefixFrom(ip, bits))
	}
	return out
}

func routeFromProto(r *pb.Route) Route {
	out := Route{Device: r.GetDevice(), Scope: r.GetScope(), Flags: r.GetFlags()}
	if d := r.GetDest(); d != "" && d != "default" {
		if p, err := netip.ParsePrefix(d); err == nil {
			out.Dest = p
		} else if a, err := netip.ParseAddr(d); err == nil {
			out.Dest = netip.PrefixFrom(a, a.BitLen())
		}
	}
	out.Gateway, _ = netip.ParseAddr(r.GetGateway())
	out.Source, _ = netip.ParseAddr(r.GetSource())
	return out
}

// routeToProto renders r for the agent; field names the route in errors.
func routeToProto(field string, r Route) (*pb.Route, error) {
	if r.Device == "" {
		return nil, fmt.Errorf("%s.device: empty: %w", field, errdefs.ErrInvalidArgument)
	}
	out := &pb.Route{Device: r.Device, Scope: r.Scope, Flags: r.Flags, Family: pb.IPFamily_v4}
	v6 := r.Dest.Addr().Is6() || r.Gateway.Is6() || r.Source.Is6()
	if v6 {
		out.Family = pb.IPFamily_v6
	}
	if r.Dest.IsValid() {
		out.Dest = r.Dest.String()
	}
	if r.Gateway.IsValid() {
		out.Gateway = r.Gateway.String()
	}
	if r.Source.IsValid() {
		out.Source = r.Source.String()
	}
	return out, nil
}
