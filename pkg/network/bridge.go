package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Bridge is the model of a VM joined to a Linux bridge of the host's own
// network namespace (a user network, pkg/usernet): a tap in the host's
// namespace, enslaved to the bridge. Frames between the VMs on one bridge
// never leave the bridge; nothing is routed or forwarded by the host.
const Bridge Model = "bridge"

// EnsureBridge makes bridge name in the calling process's network
// namespace, up, with gateway (the host's address on it) if it is valid;
// a bridge of that name already there is kept. On error a bridge this
// call made is removed.
func EnsureBridge(name string, gateway netip.Prefix) (err error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("bridge name %q: want 1-15 bytes", name)
	}
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s: %w", name, err)
		}
		defer func() {
			if err != nil {
				netlink.LinkDel(br)
			}
		}()
		if l, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
	case err != nil:
		return fmt.Errorf("bridge %s: %w", name, err)
	case l.Type() != "bridge":
		return fmt.Errorf("link %s is a %s, not a bridge: left alone: %w", name, l.Type(), unix.EEXIST)
	}
	if gateway.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: gateway.Addr().AsSlice(), Mask: net.CIDRMask(gateway.Bits(), gateway.Addr().BitLen())}}
		if err := netlink.AddrReplace(l, a); err != nil {
			return fmt.Errorf("bridge %s: address %s: %w", name, gateway, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: set up: %w", name, err)
	}
	return nil
}

// DeleteBridge removes bridge name; a missing one is no error, a link of
// another kind is left alone.
func DeleteBridge(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("link %s is a %s, not a bridge: left alone", name, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return nil
}

// SetupBridgeTap makes tap tapName in the calling process's network
// namespace, enslaved to bridge and up, and returns its open file for the
// hypervisor (the tap ends with its last open file). ep.Model and ep.Tap
// record it for Teardown. On error nothing made is left.
func SetupBridgeTap(bridge string, ep *Endpoint, tapName string) (_ *os.File, err error) {
	if len(tapName) == 0 || len(tapName) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap name %q: want 1-15 bytes", tapName)
	}
	br, err := linkByName(bridge, "bridge")
	if err != nil {
		return nil, err
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("link %s is a %s, not a bridge", bridge, br.Type())
	}
	f, err := openTun(tapName)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
			delLink(tapName, "tap")
		}
	}()
	tap, err := linkByName(tapName, "tap")
	if err != nil {
		return nil, err
	}
	if ep.MTU > 0 {
		if err := netlink.LinkSetMTU(tap, ep.MTU); err != nil {
			return nil, fmt.Errorf("tap %s: set mtu %d: %w", tapName, ep.MTU, err)
		}
	}
	if err := netlink.LinkSetMaster(tap, br); err != nil {
		return nil, fmt.Errorf("tap %s: join bridge %s: %w", tapName, bridge, err)
	}
	if err := netlink.LinkSetUp(tap); err != nil {
		return nil, fmt.Errorf("tap %s: set up: %w", tapName, err)
	}
	ep.Model, ep.Tap, ep.LinkQdisc = Bridge, tapName, false
	return f, nil
}
