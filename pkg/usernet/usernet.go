// Package usernet keeps docker's user-defined bridge networks: a subnet
// and a Linux bridge on which VMs (vc run --network NAME) reach each
// other by address and by name. The bridge lives in a network namespace
// of the network's own (the VMs' taps with it): the host's routes,
// firewall and forwarding are neither used nor changed, and the VMs reach
// nothing but each other through it.
//
//	ROOT/.lock                   the store's file lock
//	ROOT/NAME/network.json       the network (subnet, gateway, bridge)
//	ROOT/NAME/leases/ADDR.json   an address a container holds (IPAM)
//	ROOT/NAME/netns              the bridge's namespace, pinned while
//	                             containers run on the network
//
// A network appears whole or not at all (made in ROOT/.tmp-*, renamed
// into place; removed by renaming it away first). Writers hold the lock
// exclusively, readers shared: two vc run never get one address.
//
// There is no daemon: a lease belongs to the process that runs the
// container (its pid and start time are recorded). It ends when that
// process lets go (Leave), when the container is removed (Leave of any
// process), or, if the process died without either, the next time a
// writer looks (a lease of a dead process is stale). The bridge and its
// namespace are made with the first lease and removed with the last: a
// network no container runs on has neither.
//
// Names: every container on a network has its /etc/hosts kept up to date
// with the network's containers (address, name, aliases, short id), the
// way docker's embedded DNS answers for them. A lease names the host file
// bound into its container (Publish); every change of the leases rewrites
// those files in place (the bind mount, and the 9p share into the guest,
// keep the inode). Only the hosts file knows the names: a resolver that
// asks DNS alone (nslookup) does not find them.
package usernet

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"

	"github.com/virtcontainers/vc/internal/flock"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/network"
)

// Network is a user network, docker's fields where it has them.
type Network struct {
	Name    string       `json:"name"`
	ID      string       `json:"id"`
	Created time.Time    `json:"created"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Bridge is the bridge's name in the network's namespace (both made
	// while containers run on it).
	Bridge string `json:"bridge"`
}

// Lease is an address of a network held by a container.
type Lease struct {
	Addr      netip.Addr `json:"addr"`
	MAC       string     `json:"mac"`
	Container string     `json:"container"`
	CID       string     `json:"cid,omitempty"`
	Aliases   []string   `json:"aliases,omitempty"`
	// Pid and Start are the process that holds it.
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
	// Hosts is the container's /etc/hosts on the host, and Base its own
	// lines (Publish).
	Hosts string `json:"hosts,omitempty"`
	Base  string `json:"base,omitempty"`
}

// Prefix is the lease's address with its network's length.
func (l Lease) Prefix(n Network) netip.Prefix { return netip.PrefixFrom(l.Addr, n.Subnet.Bits()) }

// Store is the networks under one root, <data-root>/networks.
type Store struct {
	root string
	// The host, replaced by unit tests.
	ensureBridge func(nsPath, name string, gw netip.Prefix) error
	deleteBridge func(nsPath, name string) error
	hostRoutes   func() ([]netip.Prefix, error)
	alive        func(pid int, start uint64) bool
}

// Open returns the store at root, creating the directory.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("network store: %w", err)
	}
	return &Store{root: root, ensureBridge: network.EnsureBridge, deleteBridge: network.RemoveBridge, hostRoutes: hostRoutes, alive: proc.Running}, nil
}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// reserved are vc run's --network words, and docker's predefined
// networks.
var reserved = []string{"nat", "none", "host", "bridge", "default"}

// CheckName refuses a name docker refuses, and vc run's other --network
// values.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed: %w", name, errdefs.ErrInvalidArgument)
	}
	if slices.Contains(reserved, name) {
		return fmt.Errorf("network name %q: reserved (%s): %w", name, strings.Join(reserved, ", "), errdefs.ErrInvalidArgument)
	}
	return nil
}

func (s *Store) dir(name string) string { return filepath.Join(s.root, name) }

// NetNS is where network name's namespace, which holds its bridge, is
// pinned while containers run on it.
func (s *Store) NetNS(name string) string { return filepath.Join(s.dir(name), "netns") }

// Create makes network name on subnet (empty: a free /16 of
// 172.18-31.0.0, then a /20 of 192.168.0.0/16) with gateway (empty: the
// subnet's first address), an IPv4 subnet that overlaps neither another
// network's, nor a route of the host, nor the NAT's.
func (s *Store) Create(name, subnet, gateway string) (Network, error) {
	if err := CheckName(name); err != nil {
		return Network{}, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return Network{}, err
	}
	defer unlock()
	if _, err := s.get(name); err == nil {
		return Network{}, fmt.Errorf("network with name %s already exists: %w", name, errdefs.ErrAlreadyExists)
	} else if !errdefs.IsNotFound(err) {
		return Network{}, err
	}
	nets, err := s.list()
	if err != nil {
		return Network{}, err
	}
	routes, err := s.hostRoutes()
	if err != nil {
		return Network{}, err
	}
	n := Network{Name: name, Created: time.Now().UTC()}
	if subnet == "" {
		if n.Subnet, err = pickSubnet(nets, routes); err != nil {
			return Network{}, err
		}
	} else {
		if n.Subnet, err = parseSubnet(subnet); err != nil {
			return Network{}, err
		}
		if err := overlaps(n.Subnet, nets, routes); err != nil {
			return Network{}, err
		}
	}
	if n.Gateway, err = parseGateway(gateway, n.Subnet); err != nil {
		return Network{}, err
	}
	id := make([]byte, 32)
	rand.Read(id)
	n.ID = hex.EncodeToString(id)
	n.Bridge = "vc-" + n.ID[:12]
	tmp, err := os.MkdirTemp(s.root, ".tmp-")
	if err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", name, err)
	}
	defer os.RemoveAll(tmp) // gone once renamed
	b, _ := json.Marshal(n)
	if err := os.WriteFile(filepath.Join(tmp, "network.json"), b, 0o600); err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", name, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "leases"), 0o700); err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", name, err)
	}
	if err := os.Rename(tmp, s.dir(name)); err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", name, err)
	}
	return n, nil
}

func parseSubnet(subnet string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(subnet)
	switch {
	case err != nil:
		return p, fmt.Errorf("subnet %q: want an IPv4 CIDR such as 10.89.0.0/24: %w", subnet, errdefs.ErrInvalidArgument)
	case !p.Addr().Is4():
		return p, fmt.Errorf("subnet %q: only IPv4 networks are supported: %w", subnet, errdefs.ErrInvalidArgument)
	case p.Masked() != p:
		return p, fmt.Errorf("subnet %q: has host bits set (the network is %s): %w", subnet, p.Masked(), errdefs.ErrInvalidArgument)
	case p.Bits() > 30 || p.Bits() < 8:
		return p, fmt.Errorf("subnet %q: want a prefix length from 8 to 30: %w", subnet, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

func parseGateway(gateway string, subnet netip.Prefix) (netip.Addr, error) {
	if gateway == "" {
		return subnet.Addr().Next(), nil
	}
	a, err := netip.ParseAddr(gateway)
	if err != nil || !a.Is4() {
		return a, fmt.Errorf("gateway %q: want an IPv4 address: %w", gateway, errdefs.ErrInvalidArgument)
	}
	if !usable(subnet, a) {
		return a, fmt.Errorf("gateway %s: not a host address of subnet %s: %w", a, subnet, errdefs.ErrInvalidArgument)
	}
	return a, nil
}

// usable tells whether a is an address of subnet a host may have (not
// its network or broadcast address).
func usable(subnet netip.Prefix, a netip.Addr) bool {
	return subnet.Contains(a) && a != subnet.Addr() && a != broadcast(subnet)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func overlaps(p netip.Prefix, nets []Network, routes []netip.Prefix) error {
	if p.Overlaps(hypervisor.NATNetwork) {
		return fmt.Errorf("subnet %s: overlaps the NAT's network %s, which every container has beside: %w", p, hypervisor.NATNetwork, errdefs.ErrInvalidArgument)
	}
	for _, n := range nets {
		if n.Subnet.Overlaps(p) {
			return fmt.Errorf("subnet %s: overlaps network %s's %s: %w", p, n.Name, n.Subnet, errdefs.ErrInvalidArgument)
		}
	}
	for _, r := range routes {
		if r.Overlaps(p) {
			return fmt.Errorf("subnet %s: overlaps the host's route to %s: %w", p, r, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func pickSubnet(nets []Network, routes []netip.Prefix) (netip.Prefix, error) {
	var pool []netip.Prefix
	for i := 18; i <= 31; i++ {
		pool = append(pool, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16))
	}
	for i := 0; i < 256; i += 16 {
		pool = append(pool, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 20))
	}
	for _, p := range pool {
		if overlaps(p, nets, routes) == nil {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("subnet: every subnet of the default pool is taken; give one (--subnet): %w", errdefs.ErrFailedPrecondition)
}

// hostRoutes are the destinations of the host's IPv4 routes (the default
// route left out): a container reaches them through the NAT, which a
// network on the same addresses would hide.
func hostRoutes() ([]netip.Prefix, error) {
	rs, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("host routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		a, ok := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		if ok && ones > 0 {
			out = append(out, netip.PrefixFrom(a.Unmap(), ones).Masked())
		}
	}
	return out, nil
}

// Get returns network name with its live leases, by address;
// errdefs.ErrNotFound if there is none.
func (s *Store) Get(name string) (Network, []Lease, error) {
	if err := CheckName(name); err != nil {
		return Network{}, nil, err
	}
	unlock, err := s.lock(false)
	if err != nil {
		return Network{}, nil, err
	}
	defer unlock()
	n, err := s.get(name)
	if err != nil {
		return n, nil, err
	}
	ls, err := s.leases(name)
	if err != nil {
		return n, nil, err
	}
	return n, s.live(ls), nil
}

func (s *Store) get(name string) (Network, error) {
	b, err := os.ReadFile(filepath.Join(s.dir(name), "network.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Network{}, fmt.Errorf("network %s not found: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return Network{}, fmt.Errorf("network %s: %w", name, err)
	}
	var n Network
	if err := json.Unmarshal(b, &n); err != nil {
		return Network{}, fmt.Errorf("network %s: network.json: %w", name, err)
	}
	return n, nil
}

// List returns the networks, by name.
func (s *Store) List() ([]Network, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.list()
}

func (s *Store) list() ([]Network, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("network store: %w", err)
	}
	var out []Network
	for _, e := range ents {
		if !e.IsDir() || !validName.MatchString(e.Name()) {
			continue // the lock, and what a create or remove has under way
		}
		n, err := s.get(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil // ReadDir sorts by name
}

// leases reads network name's leases, by address.
func (s *Store) leases(name string) ([]Lease, error) {
	dir := filepath.Join(s.dir(name), "leases")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("network %s: leases: %w", name, err)
	}
	var out []Lease
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("network %s: lease %s: %w", name, e.Name(), err)
		}
		var l Lease
		if err := json.Unmarshal(b, &l); err != nil {
			return nil, fmt.Errorf("network %s: lease %s: %w", name, e.Name(), err)
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

func (s *Store) live(ls []Lease) []Lease {
	return slices.DeleteFunc(ls, func(l Lease) bool { return !s.alive(l.Pid, l.Start) })
}

func (s *Store) leasePath(name string, a netip.Addr) string {
	return filepath.Join(s.dir(name), "leases", a.String()+".json")
}

func (s *Store) saveLease(name string, l Lease) error {
	b, _ := json.Marshal(l)
	if err := os.WriteFile(s.leasePath(name, l.Addr), b, 0o600); err != nil {
		return fmt.Errorf("network %s: lease %s: %w", name, l.Addr, err)
	}
	return nil
}

// UsersFunc tells which containers are on each network, by network
// name, from their records (a stopped container keeps its network).
type UsersFunc func() (map[string][]string, error)

// Remove removes network name, refused (errdefs.ErrFailedPrecondition,
// naming them) while containers are on it: on users' record or holding
// an address.
func (s *Store) Remove(name string, users UsersFunc) error {
	if err := CheckName(name); err != nil {
		return err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	n, err := s.get(name)
	if err != nil {
		return err
	}
	ls, err := s.prune(name)
	if err != nil {
		return err
	}
	var u []string
	if users != nil {
		used, err := users()
		if err != nil {
			return err
		}
		u = used[name]
	}
	for _, l := range ls {
		if !slices.Contains(u, l.Container) && !slices.ContainsFunc(u, func(s string) bool { return strings.HasPrefix(s, l.Container+" ") }) {
			u = append(u, l.Container)
		}
	}
	if len(u) > 0 {
		return fmt.Errorf("remove network %s: network is in use by container %s: %w", name, strings.Join(u, ", "), errdefs.ErrFailedPrecondition)
	}
	if err := s.deleteBridge(s.NetNS(name), n.Bridge); err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	gone, err := os.MkdirTemp(s.root, ".rm-")
	if err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	if err := os.Rename(s.dir(name), filepath.Join(gone, name)); err != nil {
		os.Remove(gone)
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// prune removes the stale leases of network name and returns the live
// ones. The caller holds the lock exclusively.
func (s *Store) prune(name string) ([]Lease, error) {
	ls, err := s.leases(name)
	if err != nil {
		return nil, err
	}
	var live []Lease
	for _, l := range ls {
		if s.alive(l.Pid, l.Start) {
			live = append(live, l)
			continue
		}
		if err := os.Remove(s.leasePath(name, l.Addr)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("network %s: stale lease %s: %w", name, l.Addr, err)
		}
	}
	return live, nil
}

// JoinRequest is a container asking for an address of a network.
type JoinRequest struct {
	Container string
	CID       string
	// Addr is the address asked for (vc run --ip); empty: the first free.
	Addr    string
	Aliases []string
	// Pid holds the lease (0: this process).
	Pid int
}

// Join gives the container an address of network name (the one asked
// for, or the first free), held by req.Pid until Leave, and makes the
// network's bridge if it is not there. It returns the network and the
// lease; on error nothing is left.
func (s *Store) Join(name string, req JoinRequest) (Network, Lease, error) {
	if err := CheckName(name); err != nil {
		return Network{}, Lease{}, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return Network{}, Lease{}, err
	}
	defer unlock()
	n, err := s.get(name)
	if err != nil {
		return n, Lease{}, err
	}
	ls, err := s.prune(name)
	if err != nil {
		return n, Lease{}, err
	}
	taken := map[netip.Addr]string{n.Gateway: "the gateway"}
	for _, l := range ls {
		taken[l.Addr] = "container " + l.Container
		if l.Container == req.Container {
			return n, Lease{}, fmt.Errorf("network %s: container %s already has address %s: %w", name, l.Container, l.Addr, errdefs.ErrAlreadyExists)
		}
	}
	var addr netip.Addr
	if req.Addr != "" {
		a, err := netip.ParseAddr(req.Addr)
		switch {
		case err != nil || !a.Is4():
			return n, Lease{}, fmt.Errorf("ip %q: want an IPv4 address: %w", req.Addr, errdefs.ErrInvalidArgument)
		case !usable(n.Subnet, a):
			return n, Lease{}, fmt.Errorf("ip %s: not a host address of network %s's subnet %s: %w", a, name, n.Subnet, errdefs.ErrInvalidArgument)
		case taken[a] != "":
			return n, Lease{}, fmt.Errorf("ip %s: in use by %s on network %s: %w", a, taken[a], name, errdefs.ErrAlreadyExists)
		}
		addr = a
	} else {
		for a := n.Subnet.Addr().Next(); usable(n.Subnet, a); a = a.Next() {
			if taken[a] == "" {
				addr = a
				break
			}
		}
		if !addr.IsValid() {
			return n, Lease{}, fmt.Errorf("network %s: no free address left in %s: %w", name, n.Subnet, errdefs.ErrResourceExhausted)
		}
	}
	pid := req.Pid
	if pid == 0 {
		pid = os.Getpid()
	}
	start, err := proc.StartTime(pid)
	if err != nil {
		return n, Lease{}, fmt.Errorf("network %s: process %d: %w", name, pid, err)
	}
	b := addr.As4()
	l := Lease{
		Addr: addr, MAC: net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}.String(),
		Container: req.Container, CID: req.CID, Aliases: req.Aliases, Pid: pid, Start: start,
	}
	if err := s.ensureBridge(s.NetNS(name), n.Bridge, netip.PrefixFrom(n.Gateway, n.Subnet.Bits())); err != nil {
		return n, Lease{}, fmt.Errorf("network %s: %w", name, err)
	}
	if err := s.saveLease(name, l); err != nil {
		if len(ls) == 0 {
			s.deleteBridge(s.NetNS(name), n.Bridge)
		}
		return n, Lease{}, err
	}
	return n, l, nil
}

// Publish records hosts, container's /etc/hosts on the host as it is
// now (its own lines), in its lease, and writes every container's hosts
// file of network name with the network's containers.
func (s *Store) Publish(name, container, hosts string) error {
	unlock, err := s.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	ls, err := s.prune(name)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(ls, func(l Lease) bool { return l.Container == container })
	if i < 0 {
		return fmt.Errorf("network %s: container %s holds no address: %w", name, container, errdefs.ErrNotFound)
	}
	base, err := os.ReadFile(hosts)
	if err != nil {
		return fmt.Errorf("network %s: container %s: %w", name, container, err)
	}
	ls[i].Hosts, ls[i].Base = hosts, string(base)
	if err := s.saveLease(name, ls[i]); err != nil {
		return err
	}
	return s.writeHosts(name, ls)
}

// Leave gives back container's address of network name, if process pid
// holds it (0: whichever does), rewrites the others' hosts files, and
// removes the bridge once no container is left on it. A container that
// holds none is no error.
func (s *Store) Leave(name, container string, pid int) error {
	unlock, err := s.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	n, err := s.get(name)
	if err != nil {
		return err
	}
	ls, err := s.prune(name)
	if err != nil {
		return err
	}
	var left []Lease
	for _, l := range ls {
		if l.Container != container || (pid != 0 && l.Pid != pid) {
			left = append(left, l)
			continue
		}
		if err := os.Remove(s.leasePath(name, l.Addr)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("network %s: lease %s: %w", name, l.Addr, err)
		}
	}
	if len(left) == 0 {
		return s.deleteBridge(s.NetNS(name), n.Bridge)
	}
	if len(left) < len(ls) {
		return s.writeHosts(name, left)
	}
	return nil
}

// hostsLines are the network's lines of every hosts file.
func hostsLines(name string, ls []Lease) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# vc network %s\n", name)
	for _, l := range ls {
		names := append([]string{l.Container}, l.Aliases...)
		if len(l.CID) >= 12 && l.CID[:12] != l.Container {
			names = append(names, l.CID[:12])
		}
		fmt.Fprintf(&b, "%s\t%s\n", l.Addr, strings.Join(names, " "))
	}
	return b.String()
}

// writeHosts rewrites the hosts file of every lease that has one, in
// place: the file is bound into its container, a new file would not be
// seen. A file that is gone (its container removed) is skipped.
func (s *Store) writeHosts(name string, ls []Lease) error {
	lines := hostsLines(name, ls)
	var errs []error
	for _, l := range ls {
		if l.Hosts == "" {
			continue
		}
		f, err := os.OpenFile(l.Hosts, os.O_WRONLY, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("network %s: hosts of %s: %w", name, l.Container, err))
			continue
		}
		body := []byte(l.Base + lines)
		if _, err := f.WriteAt(body, 0); err != nil {
			errs = append(errs, fmt.Errorf("network %s: hosts of %s: %w", name, l.Container, err))
		} else if err := f.Truncate(int64(len(body))); err != nil {
			errs = append(errs, fmt.Errorf("network %s: hosts of %s: %w", name, l.Container, err))
		}
		f.Close()
	}
	return errors.Join(errs...)
}

func (s *Store) lock(exclusive bool) (func(), error) {
	unlock, err := flock.Lock(filepath.Join(s.root, ".lock"), exclusive)
	if err != nil {
		return nil, fmt.Errorf("network store: %w", err)
	}
	return unlock, nil
}
