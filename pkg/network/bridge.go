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

// Bridge is the model of a VM joined to a Linux bridge (a user network,
// pkg/usernet): a tap enslaved to the bridge, both in a network namespace
// of the bridge's own, so that the host's routes, firewall and
// br_netfilter never see the frames between the VMs, and the VMs reach
// nothing but each other through it.
const Bridge Model = "bridge"

// EnsureBridge makes bridge name, up, with gateway's address if it is
// valid, in the network namespace pinned at nsPath, which is made (and
// pinned) if it is not there; what is there already is kept. On error
// what this call made is removed.
func EnsureBridge(nsPath, name string, gateway netip.Prefix) (err error) {
	if len(name) == 0 || len(name) >= unix.IFNAMSIZ {
		return fmt.Errorf("bridge name %q: want 1-15 bytes", name)
	}
	if !isNetNS(nsPath) {
		// A file left by a boot before (the mount went with it).
		if err := os.Remove(nsPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
		if err := MakeNetNS(nsPath, nil); err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
		defer func() {
			if err != nil {
				RemoveNetNS(nsPath)
			}
		}()
	}
	return inNS(nsPath, func() error { return ensureBridge(name, gateway) })
}

// isNetNS tells whether a network namespace is pinned at path.
func isNetNS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

func ensureBridge(name string, gateway netip.Prefix) (err error) {
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

// RemoveBridge removes bridge name and unpins the namespace at nsPath;
// what is not there is no error, a link of another kind is left alone.
func RemoveBridge(nsPath, name string) error {
	if !isNetNS(nsPath) {
		return RemoveNetNS(nsPath)
	}
	err := inNS(nsPath, func() error {
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
	})
	if err != nil {
		return err
	}
	return RemoveNetNS(nsPath)
}

// SetupBridgeTap makes tap tapName enslaved to bridge, up, in the
// namespace at nsPath, and returns its open file for the hypervisor (the
// tap ends with its last open file). ep.Model, ep.Tap and ep.NetNS record
// it for Teardown. On error nothing made is left.
func SetupBridgeTap(nsPath, bridge string, ep *Endpoint, tapName string) (*os.File, error) {
	if len(tapName) == 0 || len(tapName) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap name %q: want 1-15 bytes", tapName)
	}
	var f *os.File
	err := inNS(nsPath, func() (err error) {
		f, err = setupBridgeTap(bridge, ep, tapName)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns %q: %w", nsPath, err)
	}
	ep.Model, ep.Tap, ep.LinkQdisc, ep.NetNS = Bridge, tapName, false, nsPath
	return f, nil
}

func setupBridgeTap(bridge string, ep *Endpoint, tapName string) (_ *os.File, err error) {
	br, err := linkByName(bridge, "bridge")
	if err != nil {
		return nil, err
	}
	if br.Type() != "bridge" {
		return nil, fmt.Errorf("link %s is a %s, not a bridge", bridge, br.Type())
	}
	f, err := openTun(tapName, false)
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
	return f, nil
}
