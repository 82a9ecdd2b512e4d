package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/usernet"
	"github.com/virtcontainers/vc/pkg/vc"
)

// User networks: docker's user-defined bridge networks, kept in
// <data-root>/networks (pkg/usernet, which says how). vc run --network
// NAME takes an address of the network for as long as the container
// runs; a network a container has, running or stopped, is not removed.

func init() {
	register("network", command{
		usage: "create [--subnet CIDR] [--gateway IP] NAME | ls [-q] | inspect NAME... | rm NAME...",
		short: "make, list, show or remove user networks (containers on one reach each other by address and name)",
		run:   networkCmd,
	})
}

func openNetworkStore(g *globals) (*usernet.Store, error) {
	return usernet.Open(filepath.Join(g.dataRoot, "networks"))
}

func networkCmd(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want a subcommand: create, ls, inspect or rm")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Printf(`usage: vc network %s

  create   make a network: an IPv4 subnet (default: a free /16 of
           172.18-31.0.0) and its gateway (default: its first address)
  ls       list the networks (-q: names only)
  inspect  show networks, with the containers on them, as JSON
  rm       remove networks no container has, running or stopped

vc run --network NAME [--ip IP] [--network-alias ALIAS] puts a container
on a network: its VM joins the network's bridge (in a network namespace
of its own, made while containers run on it) through a tap, and the
container gets an address of the subnet on eth1. Outbound traffic,
published ports (-p) and DNS stay with the NAT on eth0; the host does
not route to the network, nor the network to the host. The
containers of a network find each other by name, alias and short id
through their /etc/hosts, kept up to date as containers come and go
(ping NAME, wget http://NAME/); nslookup, which asks DNS only, does not
find them. The networks are in %s.
`, commands["network"].usage, filepath.Join(g.dataRoot, "networks"))
		return nil
	case "create":
		return networkCreate(g, args[1:])
	case "ls", "list":
		return networkLs(g, args[1:])
	case "inspect":
		return networkInspect(g, args[1:])
	case "rm", "remove":
		return networkRm(ctx, g, args[1:])
	}
	if strings.HasPrefix(args[0], "-") {
		return newFlags("network", commands["network"].usage).Parse(args)
	}
	return fmt.Errorf("subcommand %q: want create, ls, inspect or rm: %w", args[0], errdefs.ErrInvalidArgument)
}

func networkCreate(g *globals, args []string) error {
	fs := newFlags("network create", "[--subnet CIDR] [--gateway IP] NAME")
	subnet := fs.String("subnet", "", "the network's IPv4 subnet, e.g. 10.89.0.0/24 (default: a free /16 of 172.18-31.0.0)")
	gateway := fs.String("gateway", "", "the host's address on the network (default: the subnet's first)")
	driver := fs.String("driver", "bridge", "bridge (the only one)")
	fs.StringVar(driver, "d", "bridge", "the same as --driver")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	if *driver != "bridge" {
		return fmt.Errorf("--driver %q: only bridge is supported: %w", *driver, errdefs.ErrInvalidArgument)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("NAME: want one, got %d: %w", fs.NArg(), errdefs.ErrInvalidArgument)
	}
	st, err := openNetworkStore(g)
	if err != nil {
		return err
	}
	n, err := st.Create(fs.Arg(0), *subnet, *gateway)
	if err != nil {
		return flagField(err, "subnet", "gateway")
	}
	fmt.Println(n.ID)
	return nil
}

// flagField names the flag behind the library's field in err.
func flagField(err error, fields ...string) error {
	for _, f := range fields {
		if strings.HasPrefix(err.Error(), f+" ") {
			return fmt.Errorf("--%w", err)
		}
	}
	return err
}

func networkLs(g *globals, args []string) error {
	fs := newFlags("network ls", "[-q]")
	quiet := fs.Bool("q", false, "print the names only")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	st, err := openNetworkStore(g)
	if err != nil {
		return err
	}
	nets, err := st.List()
	if err != nil {
		return err
	}
	if *quiet {
		for _, n := range nets {
			fmt.Println(n.Name)
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NETWORK ID\tNAME\tDRIVER\tSCOPE\tSUBNET")
	for _, n := range nets {
		fmt.Fprintf(tw, "%s\t%s\tbridge\tlocal\t%s\n", n.ID[:12], n.Name, n.Subnet)
	}
	return tw.Flush()
}

// inspectedNetwork is docker's network inspect.
type inspectedNetwork struct {
	Name       string                       `json:"Name"`
	ID         string                       `json:"Id"`
	Created    string                       `json:"Created"`
	Scope      string                       `json:"Scope"`
	Driver     string                       `json:"Driver"`
	IPAM       inspectedIPAM                `json:"IPAM"`
	Containers map[string]inspectedEndpoint `json:"Containers"`
	Options    map[string]string            `json:"Options"`
}

type inspectedIPAM struct {
	Driver string              `json:"Driver"`
	Config []map[string]string `json:"Config"`
}

type inspectedEndpoint struct {
	Name        string   `json:"Name"`
	MacAddress  string   `json:"MacAddress"`
	IPv4Address string   `json:"IPv4Address"`
	Aliases     []string `json:"Aliases,omitempty"`
}

func networkInspect(g *globals, args []string) error {
	fs := newFlags("network inspect", "NAME...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("NAME: missing: %w", errdefs.ErrInvalidArgument)
	}
	st, err := openNetworkStore(g)
	if err != nil {
		return err
	}
	out := []inspectedNetwork{}
	var errs []error
	for _, name := range fs.Args() {
		n, leases, err := st.Get(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		in := inspectedNetwork{
			Name: n.Name, ID: n.ID, Created: n.Created.Format("2006-01-02T15:04:05.999999999Z07:00"), Scope: "local", Driver: "bridge",
			IPAM:       inspectedIPAM{Driver: "default", Config: []map[string]string{{"Subnet": n.Subnet.String(), "Gateway": n.Gateway.String()}}},
			Containers: map[string]inspectedEndpoint{},
			Options:    map[string]string{"com.docker.network.bridge.name": n.Bridge},
		}
		for _, l := range leases {
			key := l.CID
			if key == "" {
				key = l.Container
			}
			in.Containers[key] = inspectedEndpoint{Name: l.Container, MacAddress: l.MAC, IPv4Address: l.Prefix(n).String(), Aliases: l.Aliases}
		}
		out = append(out, in)
	}
	b, _ := json.MarshalIndent(out, "", "    ")
	fmt.Println(string(b))
	return errors.Join(errs...)
}

func networkRm(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("network rm", "NAME...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("NAME: missing: %w", errdefs.ErrInvalidArgument)
	}
	st, err := openNetworkStore(g)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range fs.Args() {
		if err := st.Remove(n, networkUsers(ctx, g)); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Println(n)
	}
	return errors.Join(errs...)
}

// networkUsers maps each network to the containers on record on it.
func networkUsers(ctx context.Context, g *globals) usernet.UsersFunc {
	return usersOf(ctx, g, func(o runOptions) []string {
		if o.Network == "" {
			return nil
		}
		return []string{o.Network}
	})
}

// checkUserNetwork refuses a --network naming no network, before
// anything is made.
func checkUserNetwork(g *globals, name string) error {
	st, err := openNetworkStore(g)
	if err != nil {
		return err
	}
	if _, _, err := st.Get(name); err != nil {
		return fmt.Errorf("--network %q: %w", name, err)
	}
	return nil
}

// joinNetwork takes o's address on its user network for this process and
// returns the sandbox's NIC on the network's bridge, and leave, which
// gives it back (and is safe to call again).
func joinNetwork(g *globals, o runOptions) (vc.BridgeNIC, func(), error) {
	st, err := openNetworkStore(g)
	if err != nil {
		return vc.BridgeNIC{}, nil, err
	}
	n, l, err := st.Join(o.Network, usernet.JoinRequest{Container: o.ID, CID: o.CID, Addr: o.IP, Aliases: o.Aliases})
	if err != nil {
		return vc.BridgeNIC{}, nil, flagField(err, "ip")
	}
	done := false
	leave := func() {
		if done {
			return
		}
		done = true
		if err := st.Leave(o.Network, o.ID, os.Getpid()); err != nil {
			slog.Warn("leave network", "container", o.ID, "network", o.Network, "err", err)
		}
	}
	return vc.BridgeNIC{Bridge: n.Bridge, NetNS: st.NetNS(o.Network), MAC: l.MAC, Addr: l.Prefix(n)}, leave, nil
}

// publishNames keeps the container's /etc/hosts (if vc wrote it: not a
// user's -v) up to date with the containers of its network.
func publishNames(g *globals, s *vc.Sandbox, o runOptions) error {
	hosts := s.EtcFile(o.ID, "hosts")
	if _, err := os.Stat(hosts); err != nil {
		return nil
	}
	st, err := openNetworkStore(g)
	if err != nil {
		return err
	}
	return st.Publish(o.Network, o.ID, hosts)
}

// leaveNetwork gives back a removed container's address, whoever holds
// it (its owner may be gone).
func leaveNetwork(g *globals, o runOptions) {
	if o.Network == "" {
		return
	}
	st, err := openNetworkStore(g)
	if err == nil {
		err = st.Leave(o.Network, o.ID, 0)
	}
	if err != nil && !errdefs.IsNotFound(err) {
		slog.Warn("leave network", "container", o.ID, "network", o.Network, "err", err)
	}
}
