package vc

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/network"
)

// A sandbox without a network namespace may join Linux bridges, each in
// a network namespace of its own (SandboxConfig.Bridges: user networks,
// which pkg/usernet keeps): each gets a tap of its own in the bridge's
// namespace, enslaved to the bridge, and a NIC with the MAC and address
// the caller chose. The NAT, when on, stays the guest's eth0 and its default route;
// a bridge's NIC is the next ethN with a route to its subnet only. The
// taps are endpoints of the sandbox's status (model network.Bridge), torn
// down as the namespace's are; a tap also ends with the VM, which holds
// its last open file.

// BridgeNIC is the sandbox's NIC on a host bridge.
type BridgeNIC struct {
	// Bridge is the bridge's name in the network namespace pinned at
	// NetNS; both must exist.
	Bridge string `json:"bridge"`
	NetNS  string `json:"netns"`
	// MAC and Addr are the guest's on it (Addr with its subnet's length).
	MAC  string       `json:"mac"`
	Addr netip.Prefix `json:"addr"`
	// MTU: 0 is 1500.
	MTU int `json:"mtu,omitempty"`
}

func (c *SandboxConfig) validateBridges() error {
	if len(c.Bridges) > 0 && c.NetNS != "" {
		return fmt.Errorf("bridges: the sandbox joins network namespace %s; bridges are for a sandbox without one: %w", c.NetNS, errdefs.ErrInvalidArgument)
	}
	for i, b := range c.Bridges {
		if b.Bridge == "" || len(b.Bridge) >= unix.IFNAMSIZ {
			return fmt.Errorf("bridges[%d].bridge %q: want 1-15 bytes: %w", i, b.Bridge, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(b.NetNS); b.NetNS == "" || err != nil {
			return fmt.Errorf("bridges[%d].netns %q: want the path of the bridge's network namespace: %w", i, b.NetNS, errdefs.ErrInvalidArgument)
		}
		if _, err := net.ParseMAC(b.MAC); err != nil {
			return fmt.Errorf("bridges[%d].mac %q: %w: %w", i, b.MAC, err, errdefs.ErrInvalidArgument)
		}
		if !b.Addr.IsValid() || b.Addr.Bits() == 0 {
			return fmt.Errorf("bridges[%d].addr %q: want an address with its subnet's length: %w", i, b.Addr, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// bridgeTapName is a tap name of its own in the bridge's namespace.
func bridgeTapName() string {
	b := make([]byte, 5)
	rand.Read(b)
	return "vctap" + hex.EncodeToString(b)
}

// setupBridges makes the taps of cfg.Bridges, recorded as endpoints. On
// error nothing is left.
func (s *Sandbox) setupBridges(cfg SandboxConfig) (_ []hypervisor.NIC, _ []*os.File, err error) {
	var nics []hypervisor.NIC
	var files []*os.File
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			s.teardownNetwork()
		}
	}()
	first := 0
	if cfg.NATEnabled() {
		first = 1 // eth0 is the NAT's
	}
	for i, b := range cfg.Bridges {
		mtu := b.MTU
		if mtu == 0 {
			mtu = 1500
		}
		p := b.Addr
		ep := network.Endpoint{
			Name: b.Bridge, Type: "bridge", MAC: b.MAC, MTU: mtu, GuestName: guestName(first + i),
			Addrs:  []netip.Prefix{p},
			Routes: []network.Route{{Dst: p.Masked(), Src: p.Addr(), Scope: unix.RT_SCOPE_LINK, Family: unix.AF_INET}},
		}
		if p.Addr().Is6() {
			ep.Routes[0].Family = unix.AF_INET6
		}
		f, err := network.SetupBridgeTap(b.NetNS, b.Bridge, &ep, bridgeTapName())
		if err != nil {
			return nil, nil, fmt.Errorf("bridges[%d]: %w", i, err)
		}
		files = append(files, f)
		s.status.Endpoints = append(s.status.Endpoints, ep)
		nic, err := nicFor(ep, f)
		if err != nil {
			return nil, nil, err
		}
		nics = append(nics, nic)
		s.log.Info("bridge endpoint", "bridge", b.Bridge, "mac", ep.MAC, "tap", ep.Tap, "guest", ep.GuestName, "addr", p)
	}
	return nics, files, nil
}
