package network

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/virtcontainers/vc/pkg/network/nstest"
)

// A bridge is made once (again: kept), a tap joins it and goes with
// Teardown, the bridge with DeleteBridge; a link of another kind is left
// alone. In a namespace of the test's own.
func TestBridgeTap(t *testing.T) {
	needRoot(t)
	ns := nstest.New(t, "brtap")
	gw := netip.MustParsePrefix("10.66.0.1/24")
	err := inNS(ns.Path, func() error {
		for range 2 {
			if err := EnsureBridge("vc-test", gw); err != nil {
				return err
			}
		}
		br, err := netlink.LinkByName("vc-test")
		if err != nil {
			return err
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != gw.String() {
			t.Errorf("bridge addresses %v, want %s once", addrs, gw)
		}
		ep := Endpoint{Name: "vc-test", MTU: 1400}
		f, err := SetupBridgeTap("vc-test", &ep, "vctaptest")
		if err != nil {
			return err
		}
		defer f.Close()
		tap, err := netlink.LinkByName("vctaptest")
		if err != nil {
			return err
		}
		if tap.Attrs().MasterIndex != br.Attrs().Index || tap.Attrs().MTU != 1400 || ep.Model != Bridge || ep.Tap != "vctaptest" {
			t.Errorf("tap %+v endpoint %+v: want it on vc-test with MTU 1400", tap.Attrs(), ep)
		}
		if _, err := SetupBridgeTap("vc-missing", &Endpoint{}, "vctaptest2"); err == nil {
			t.Error("a tap on a missing bridge was made")
		}
		if err := Teardown("", ep); err != nil {
			return err
		}
		var nf netlink.LinkNotFoundError
		if _, err := netlink.LinkByName("vctaptest"); !errors.As(err, &nf) {
			t.Errorf("tap after Teardown: %v", err)
		}
		for range 2 {
			if err := DeleteBridge("vc-test"); err != nil {
				return err
			}
		}
		if _, err := netlink.LinkByName("vc-test"); !errors.As(err, &nf) {
			t.Errorf("bridge after DeleteBridge: %v", err)
		}
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vc-veth"}, PeerName: "vc-vethp"}); err != nil {
			return err
		}
		if EnsureBridge("vc-veth", gw) == nil || DeleteBridge("vc-veth") == nil {
			t.Error("a veth was taken for a bridge")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
