package vc

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
)

func TestInterfaceFromProto(t *testing.T) {
	got := interfaceFromProto(&pb.Interface{Name: "eth0", HwAddr: "02:00:00:00:00:01", Mtu: 1500, Type: "tcfilter", IPAddresses: []*pb.IPAddress{
		{Family: pb.IPFamily_v4, Address: "10.0.0.2", Mask: "24"},
		{Family: pb.IPFamily_v6, Address: "fd00::2", Mask: "64"},
	}})
	want := Interface{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1500, Type: "tcfilter", Addrs: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.2/24"), netip.MustParsePrefix("fd00::2/64"),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// Routes cross to the agent and back unchanged; the default route has no
// destination; a route without a device is refused naming its field.
func TestRouteRoundTrip(t *testing.T) {
	for _, r := range []Route{
		{Device: "eth0", Gateway: netip.MustParseAddr("10.0.0.1")},
		{Device: "eth0", Dest: netip.MustParsePrefix("10.0.0.0/24"), Source: netip.MustParseAddr("10.0.0.2"), Scope: 253},
		{Device: "eth1", Dest: netip.MustParsePrefix("fd00::/64"), Gateway: netip.MustParseAddr("fd00::1"), Flags: 4},
	} {
		pr, err := routeToProto("routes[0]", r)
		if err != nil {
			t.Fatal(err)
		}
		if got := routeFromProto(pr); !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %+v: %+v (wire %+v)", r, got, pr)
		}
		if v6 := r.Gateway.Is6() || r.Dest.Addr().Is6(); v6 != (pr.Family == pb.IPFamily_v6) {
			t.Errorf("%+v: family %v", r, pr.Family)
		}
	}
	if got := routeFromProto(&pb.Route{Dest: "default", Device: "eth0"}); got.Dest.IsValid() {
		t.Errorf("default route got dest %v", got.Dest)
	}
	if _, err := routeToProto("routes[3]", Route{}); !errdefs.IsInvalidArgument(err) || err.Error() != "routes[3].device: empty: invalid argument" {
		t.Errorf("route without device: %v", err)
	}
}
