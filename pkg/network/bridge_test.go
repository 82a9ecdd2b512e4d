package network

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
)

// A bridge's namespace and the bridge are made once (again: kept), a tap
// joins the bridge and goes with Teardown, the bridge and its namespace
// with RemoveBridge; nothing shows in the host's namespace.
func TestBridgeTap(t *testing.T) {
	needRoot(t)
	ns := filepath.Join(t.TempDir(), "netns")
	t.Cleanup(func() { RemoveNetNS(ns) })
	gw := netip.MustParsePrefix("10.66.0.1/24")
	for range 2 {
		if err := EnsureBridge(ns, "vc-test", gw); err != nil {
			t.Fatal(err)
		}
	}
	ep := Endpoint{Name: "vc-test", MTU: 1400}
	f, err := SetupBridgeTap(ns, "vc-test", &ep, "vctaptest")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ep.Model != Bridge || ep.Tap != "vctaptest" || ep.NetNS != ns {
		t.Errorf("endpoint %+v", ep)
	}
	if _, err := netlink.LinkByName("vctaptest"); err == nil {
		t.Error("the tap is in the host's namespace")
	}
	var nf netlink.LinkNotFoundError
	err = inNS(ns, func() error {
		br, err := netlink.LinkByName("vc-test")
		if err != nil {
			return err
		}
		addrs, _ := netlink.AddrList(br, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != gw.String() {
			t.Errorf("bridge addresses %v, want %s once", addrs, gw)
		}
		tap, err := netlink.LinkByName("vctaptest")
		if err != nil {
			return err
		}
		if tap.Attrs().MasterIndex != br.Attrs().Index || tap.Attrs().MTU != 1400 {
			t.Errorf("tap %+v: want it on vc-test with MTU 1400", tap.Attrs())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetupBridgeTap(ns, "vc-missing", &Endpoint{}, "vctaptest2"); err == nil {
		t.Error("a tap on a missing bridge was made")
	}
	if err := Teardown("", ep); err != nil {
		t.Fatal(err)
	}
	inNS(ns, func() error {
		if _, err := netlink.LinkByName("vctaptest"); !errors.As(err, &nf) {
			t.Errorf("tap after Teardown: %v", err)
		}
		return nil
	})
	for range 2 {
		if err := RemoveBridge(ns, "vc-test"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(ns); !os.IsNotExist(err) {
		t.Errorf("the namespace's pin after RemoveBridge: %v", err)
	}
	if err := Teardown("", ep); err != nil {
		t.Errorf("Teardown once the namespace is gone: %v", err)
	}
}
