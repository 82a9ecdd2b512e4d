package vc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/network"
)

// The sandbox joins the network namespace SandboxConfig.NetNS: each of its
// links gets a tap (or macvtap) in that namespace and a virtio-net NIC with
// the link's MAC address, and the guest is given the link's addresses,
// routes and permanent neighbours. The endpoints are recorded in the
// sandbox status so that whichever process stops or deletes the sandbox
// removes what was made.

// hotplugWait bounds how long a hotplugged NIC takes to show in the guest.
const hotplugWait = 20 * time.Second

func tapName(i int) string   { return fmt.Sprintf("tap%d_vc", i) }
func guestName(i int) string { return fmt.Sprintf("eth%d", i) }

// setupNetwork discovers the sandbox's namespace and makes an endpoint for
// each link. It returns the NICs to start the VM with and the open tap
// files (closed by the caller once the VM runs). On error nothing is left.
func (s *Sandbox) setupNetwork(cfg SandboxConfig) (_ []hypervisor.NIC, _ []*os.File, err error) {
	if cfg.NetNS == "" {
		if cfg.NATEnabled() {
			s.log.Info("no network namespace: the sandbox gets the user-mode NAT", "publish", fmt.Sprint(cfg.NAT.Publish))
		} else if len(cfg.Bridges) == 0 {
			s.log.Info("no network namespace and the NAT disabled: the sandbox has loopback only")
		}
		return s.setupBridges(cfg)
	}
	model, err := network.ParseModel(cfg.NetworkModel)
	if err != nil {
		return nil, nil, fmt.Errorf("network_model: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	eps, err := network.Discover(cfg.NetNS)
	if err != nil {
		return nil, nil, fmt.Errorf("netns: %w", err)
	}
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
	for i := range eps {
		ep := &eps[i]
		ep.GuestName = guestName(i)
		fs, err := network.SetupQueues(cfg.NetNS, ep, model, tapName(i), nicQueues(cfg))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, fs...)
		s.status.Endpoints = append(s.status.Endpoints, *ep)
		nic, err := nicFor(*ep, fs...)
		if err != nil {
			return nil, nil, err
		}
		nics = append(nics, nic)
		s.log.Info("network endpoint", "link", ep.Name, "mac", ep.MAC, "tap", ep.Tap, "model", model, "guest", ep.GuestName, "addrs", fmt.Sprint(ep.Addrs))
	}
	if len(eps) == 0 {
		s.log.Warn("network namespace has no link but loopback", "netns", cfg.NetNS)
	}
	return nics, files, nil
}

// nicQueues is the queue pairs of a sandbox's NICs: one per boot vCPU, so
// that each vCPU sends and receives on a queue of its own (the guest's
// virtio-net turns them all on when it has as many CPUs online).
func nicQueues(cfg SandboxConfig) int {
	return min(int(cmp.Or(cfg.Hypervisor.CPUs, hypervisor.DefaultCPUs)), network.MaxQueues)
}

// nicFor is ep's NIC over the tap files fs, one per queue.
func nicFor(ep network.Endpoint, fs ...*os.File) (hypervisor.NIC, error) {
	mac, err := net.ParseMAC(ep.MAC)
	if err != nil {
		return hypervisor.NIC{}, fmt.Errorf("link %s: mac %q: %w", ep.Name, ep.MAC, err)
	}
	return hypervisor.NIC{ID: ep.GuestName, TapFiles: fs, MAC: mac, MTU: ep.MTU}, nil
}

// teardownNetwork removes the recorded endpoints from the namespace. It is
// safe to call again.
func (s *Sandbox) teardownNetwork() {
	var left []network.Endpoint
	for _, ep := range s.status.Endpoints {
		if err := network.Teardown(s.status.Config.NetNS, ep); err != nil {
			s.log.Warn("network teardown", "link", ep.Name, "err", err)
			left = append(left, ep)
			continue
		}
		s.log.Info("network endpoint removed", "link", ep.Name, "tap", ep.Tap)
	}
	s.status.Endpoints = left
}

// configureGuestNetwork gives the guest the endpoints' identities: the
// interfaces (waiting up to wait for each to appear: hotplugged NICs),
// then every route, then the permanent neighbours.
func (s *Sandbox) configureGuestNetwork(ctx context.Context, eps []network.Endpoint, wait time.Duration) error {
	for _, ep := range eps {
		if _, err := s.updateInterface(ctx, ep, wait); err != nil {
			return err
		}
	}
	return s.configureRoutesAndNeighbors(ctx, eps)
}

// configureRoutesAndNeighbors sets the guest's routes to those of every
// endpoint recorded, and adds eps' permanent neighbours.
func (s *Sandbox) configureRoutesAndNeighbors(ctx context.Context, eps []network.Endpoint) error {
	if len(s.status.Endpoints) > 0 {
		routes := guestRoutes(s.status.Endpoints)
		if s.status.Config.NATEnabled() {
			// Beside the NAT (bridges): its routes stay.
			routes = append(natRoutes(), routes...)
		}
		if _, err := s.agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: routes}}); err != nil {
			return fmt.Errorf("agent UpdateRoutes: %w", err)
		}
	}
	var neigh []*pb.ARPNeighbor
	for _, ep := range eps {
		for _, n := range ep.Neighbors {
			neigh = append(neigh, &pb.ARPNeighbor{
				ToIPAddress: ipAddress(n.IP, n.IP.BitLen()),
				Device:      ep.GuestName,
				Lladdr:      n.MAC,
				State:       int32(n.State),
				Flags:       int32(n.Flags),
			})
		}
	}
	if len(neigh) > 0 {
		if _, err := s.agent.AddARPNeighbors(ctx, &pb.AddARPNeighborsRequest{Neighbors: &pb.ARPNeighbors{ARPNeighbors: neigh}}); err != nil {
			return fmt.Errorf("agent AddARPNeighbors: %w", err)
		}
	}
	return nil
}

// updateInterface configures ep's NIC in the guest; a hotplugged NIC may
// take a moment to show, so a link not found yet is retried until wait.
func (s *Sandbox) updateInterface(ctx context.Context, ep network.Endpoint, wait time.Duration) (*pb.Interface, error) {
	iface := &pb.Interface{Device: ep.GuestName, Name: ep.GuestName, Mtu: uint64(ep.MTU), HwAddr: ep.MAC, Type: string(ep.Model)}
	for _, a := range ep.Addrs {
		iface.IPAddresses = append(iface.IPAddresses, ipAddress(a.Addr(), a.Bits()))
	}
	deadline := time.Now().Add(wait)
	for {
		got, err := s.agent.UpdateInterface(ctx, &pb.UpdateInterfaceRequest{Interface: iface})
		if err == nil {
			return got, nil
		}
		if !errdefs.IsNotFound(err) || time.Now().After(deadline) {
			return nil, fmt.Errorf("agent UpdateInterface %s (mac %s): %w", ep.GuestName, ep.MAC, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent UpdateInterface %s (mac %s): %w", ep.GuestName, ep.MAC, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func ipAddress(ip netip.Addr, bits int) *pb.IPAddress {
	fam := pb.IPFamily_v6
	if ip.Is4() {
		fam = pb.IPFamily_v4
	}
	return &pb.IPAddress{Family: fam, Address: ip.String(), Mask: strconv.Itoa(bits)}
}

// guestRoutes translates the namespace's routes to the guest's device
// names.
func guestRoutes(eps []network.Endpoint) []*pb.Route {
	var out []*pb.Route
	for _, ep := range eps {
		for _, r := range ep.Routes {
			pr, err := routeToProto("route", Route{Device: ep.GuestName, Dest: r.Dst, Gateway: r.Gateway, Source: r.Src, Scope: uint32(r.Scope), Flags: uint32(r.Flags)})
			if err != nil {
				continue // no guest device: nothing to route through
			}
			if r.Family == unix.AF_INET6 {
				pr.Family = pb.IPFamily_v6 // a v6 route may name no address
			}
			out = append(out, pr)
		}
	}
	return out
}

// hypervisorHandle is the VM handle to hotplug with: the owner's, or one
// attached through the VM's second control socket. release drops an
// attached one.
func (s *Sandbox) hypervisorHandle(ctx context.Context) (hypervisor.Hypervisor, func(), error) {
	if s.vm != nil {
		return s.vm, func() {}, nil
	}
	vm, err := s.attachVM(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox %s: attach to the vm for hotplug: %w", s.id, err)
	}
	return vm, func() { hypervisor.Detach(vm) }, nil
}

// AddInterface joins link linkName of the sandbox's network namespace to
// the running VM: a tap (or macvtap) is made for it, a NIC with its MAC
// hotplugged, and the guest given its addresses, routes and neighbours. It
// returns the interface as the guest then has it.
func (s *Sandbox) AddInterface(ctx context.Context, linkName string) (iface Interface, err error) {
	err = s.locked(ctx, "add interface "+linkName, []State{StateRunning}, func() error {
		iface, err = s.addInterface(ctx, linkName)
		return err
	})
	return iface, err
}

func (s *Sandbox) addInterface(ctx context.Context, linkName string) (_ Interface, err error) {
	if err := s.running(); err != nil {
		return Interface{}, err
	}
	cfg := s.status.Config
	if cfg.NetNS == "" {
		return Interface{}, fmt.Errorf("sandbox %s: AddInterface %s: the sandbox has no network namespace: %w", s.id, linkName, errdefs.ErrFailedPrecondition)
	}
	used := map[string]bool{}
	for _, ep := range s.status.Endpoints {
		if ep.Name == linkName {
			return Interface{}, fmt.Errorf("sandbox %s: link %s is already joined as %s: %w", s.id, linkName, ep.GuestName, errdefs.ErrAlreadyExists)
		}
		used[ep.GuestName] = true
	}
	ep, err := network.DiscoverLink(cfg.NetNS, linkName)
	if err != nil {
		return Interface{}, fmt.Errorf("sandbox %s: AddInterface: %w: %w", s.id, err, errdefs.ErrNotFound)
	}
	i := 0
	for used[guestName(i)] {
		i++
	}
	ep.GuestName = guestName(i)
	model, err := network.ParseModel(cfg.NetworkModel)
	if err != nil {
		return Interface{}, err
	}
	fs, err := network.SetupQueues(cfg.NetNS, &ep, model, tapName(i), nicQueues(cfg))
	if err != nil {
		return Interface{}, fmt.Errorf("sandbox %s: AddInterface: %w", s.id, err)
	}
	defer func() {
		for _, f := range fs {
			f.Close()
		}
	}()
	undo := context.WithoutCancel(ctx)
	defer func() {
		if err != nil {
			if terr := network.Teardown(cfg.NetNS, ep); terr != nil {
				s.log.Warn("undo AddInterface: teardown", "link", linkName, "err", terr)
			}
		}
	}()
	nic, err := nicFor(ep, fs...)
	if err != nil {
		return Interface{}, err
	}
	vm, release, err := s.hypervisorHandle(ctx)
	if err != nil {
		return Interface{}, err
	}
	defer release()
	if err := vm.AddNIC(ctx, nic); err != nil {
		return Interface{}, fmt.Errorf("sandbox %s: AddInterface %s: %w", s.id, linkName, err)
	}
	defer func() {
		if err != nil {
			if rerr := hypervisor.RemoveNIC(undo, vm, nic.ID); rerr != nil {
				s.log.Warn("undo AddInterface: remove nic", "nic", nic.ID, "err", rerr)
			}
		}
	}()
	s.log.Info("nic hotplugged", "link", linkName, "guest", ep.GuestName, "tap", ep.Tap, "mac", ep.MAC)
	got, err := s.updateInterface(ctx, ep, hotplugWait)
	if err != nil {
		return Interface{}, err
	}
	s.status.Endpoints = append(s.status.Endpoints, ep)
	if err := s.configureRoutesAndNeighbors(ctx, []network.Endpoint{ep}); err != nil {
		s.status.Endpoints = s.status.Endpoints[:len(s.status.Endpoints)-1]
		return Interface{}, err
	}
	if err := s.save(); err != nil {
		s.status.Endpoints = s.status.Endpoints[:len(s.status.Endpoints)-1]
		return Interface{}, err
	}
	return interfaceFromProto(got), nil
}

// RemoveInterface detaches the interface made for link linkName (or named
// so in the guest): the NIC is unplugged, which takes the guest's link and
// its routes with it, and the tap and qdiscs are removed from the
// namespace.
func (s *Sandbox) RemoveInterface(ctx context.Context, linkName string) error {
	return s.locked(ctx, "remove interface "+linkName, []State{StateRunning}, func() error { return s.removeInterface(ctx, linkName) })
}

func (s *Sandbox) removeInterface(ctx context.Context, linkName string) error {
	if err := s.running(); err != nil {
		return err
	}
	idx := -1
	for i, ep := range s.status.Endpoints {
		if ep.Name == linkName || ep.GuestName == linkName {
			idx = i
		}
	}
	if idx < 0 {
		return fmt.Errorf("sandbox %s: RemoveInterface: no interface for link %q: %w", s.id, linkName, errdefs.ErrNotFound)
	}
	ep := s.status.Endpoints[idx]
	vm, release, err := s.hypervisorHandle(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := hypervisor.RemoveNIC(ctx, vm, ep.GuestName); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("sandbox %s: RemoveInterface %s: %w", s.id, linkName, err)
	}
	s.status.Endpoints = append(s.status.Endpoints[:idx:idx], s.status.Endpoints[idx+1:]...)
	terr := network.Teardown(s.status.Config.NetNS, ep)
	if err := s.save(); err != nil {
		return errors.Join(err, terr)
	}
	if terr != nil {
		return fmt.Errorf("sandbox %s: RemoveInterface %s: %w", s.id, linkName, terr)
	}
	s.log.Info("interface removed", "link", ep.Name, "guest", ep.GuestName, "tap", ep.Tap)
	return nil
}

// ListInterfaces reports the guest's interfaces.
func (s *Sandbox) ListInterfaces(ctx context.Context) ([]Interface, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	r, err := s.agent.ListInterfaces(ctx, &pb.ListInterfacesRequest{})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: list interfaces: %w", s.id, err)
	}
	var out []Interface
	for _, i := range r.Interfaces {
		out = append(out, interfaceFromProto(i))
	}
	return out, nil
}

// UpdateRoutes replaces the guest's routes (on every link but loopback)
// with routes, and returns the routes the guest then has.
func (s *Sandbox) UpdateRoutes(ctx context.Context, routes []Route) ([]Route, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	var req []*pb.Route
	for i, r := range routes {
		pr, err := routeToProto(fmt.Sprintf("routes[%d]", i), r)
		if err != nil {
			return nil, err
		}
		req = append(req, pr)
	}
	r, err := s.agent.UpdateRoutes(ctx, &pb.UpdateRoutesRequest{Routes: &pb.Routes{Routes: req}})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: update routes: %w", s.id, err)
	}
	return routesFromProto(r.Routes), nil
}

// ListRoutes reports the guest's routes.
func (s *Sandbox) ListRoutes(ctx context.Context) ([]Route, error) {
	if err := s.running(); err != nil {
		return nil, err
	}
	r, err := s.agent.ListRoutes(ctx, &pb.ListRoutesRequest{})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: list routes: %w", s.id, err)
	}
	return routesFromProto(r.Routes), nil
}

func routesFromProto(rs []*pb.Route) []Route {
	var out []Route
	for _, r := range rs {
		out = append(out, routeFromProto(r))
	}
	return out
}
