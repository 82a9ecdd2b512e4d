package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/usernet"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("run", command{
		usage: "[--rm] [-d] [-i] [-t] [--name N] [--cpus N] [-m SIZE] [-v HOST:CTR[:ro]] [-v NAME:CTR[:ro]] [-v CTR] [--mount type=bind|volume|tmpfs,...] [--tmpfs CTR[:OPTS]] [-e K[=V]] [--env-file F] [-w DIR] [-u USER[:GROUP]] [--entrypoint P] [--hostname H] [--read-only] [--init] [--privileged] [--device HOST[:CTR[:rwm]]] [--cap-add C] [--cap-drop C] [--rootfs DIR] [--network nat|none|NAME|NETNS] [--ip IP] [--network-alias A] [-p [IP:]HOST:CTR[/udp]] [--dns IP] IMAGE [-- CMD ARGS...]",
		short: "run a command in a new container in its own VM",
		run:   runCmd,
	})
	register("__run-owner", command{run: runOwnerCmd})
}

// runOptions is everything `vc run` was asked; the detached owner process
// receives it as JSON.
type runOptions struct {
	ID          string   `json:"id"`
	Image       string   `json:"image"`
	Rootfs      string   `json:"rootfs"`
	Args        []string `json:"args"`
	Env         []string `json:"env"`
	Workdir     string   `json:"workdir"`
	Volumes     []string `json:"volumes"` // -v, in records vc wrote before Mounts
	CPUs        uint32   `json:"cpus"`
	CPUQuota    int64    `json:"cpu_quota,omitempty"` // the container's CFS quota per cpuPeriod (--cpus 0.5: 50000); CPUs is the limit rounded up
	MemoryMiB   uint32   `json:"memory_mib"`
	Rm          bool     `json:"rm"`
	Detach      bool     `json:"detach"`
	Interactive bool     `json:"interactive"`
	TTY         bool     `json:"tty"`
	Kernel      string   `json:"kernel"`
	Initrd      string   `json:"initrd"`
	Accel       string   `json:"accel"`
	Debug       bool     `json:"debug"`
	NetNS       string   `json:"netns,omitempty"`
	// Network is a user network (vc network) the container joins, at
	// address IP if set, known there by its name and Aliases too.
	Network string   `json:"network,omitempty"`
	IP      string   `json:"ip,omitempty"`
	Aliases []string `json:"aliases,omitempty"`
	// NoNAT, Publish and DNS: the user-mode NAT of a VM without NetNS.
	NoNAT   bool             `json:"no_nat,omitempty"`
	Publish []vc.PortMapping `json:"publish,omitempty"`
	DNS     []netip.Addr     `json:"dns,omitempty"`
	// docker's: the process's user, an entrypoint before the command,
	// the hostname, a read-only root, capabilities.
	User       string   `json:"user,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Hostname   string   `json:"hostname,omitempty"`
	ReadOnly   bool     `json:"read_only,omitempty"`
	Privileged bool     `json:"privileged,omitempty"`
	CapAdd     []string `json:"cap_add,omitempty"`
	CapDrop    []string `json:"cap_drop,omitempty"`
	// Devices are --device's HOSTPATH[:CONTAINERPATH[:PERMS]] (device.go).
	Devices []string `json:"devices,omitempty"`
	// Init runs docker's init (tini) as the container's PID 1.
	Init bool `json:"init,omitempty"`
	// Create leaves the container created: `vc start` starts it.
	Create bool `json:"create,omitempty"`
	// Factory is auto, on or off: whether the VM starts from the
	// factory's template (factory.go).
	Factory string `json:"factory,omitempty"`
	// SharedFS is how the container's files reach the VM: 9p (default)
	// or virtio-fs (pkg/vc HypervisorConfig.SharedFS).
	SharedFS string `json:"shared_fs,omitempty"`
	// ImageDigest is the manifest digest Image had when the container was
	// first run: vc start and vc restart run that image again, as docker
	// does, whatever the name points at now or if it points at nothing
	// (rmi -f keeps a container's image until the container goes).
	ImageDigest string `json:"image_digest,omitempty"`
	// Policy is the agent policy (--policy FILE's content, read once):
	// the VM boots the policy image and its agent enforces it.
	Policy string `json:"policy,omitempty"`
	// Carry is what a restart keeps of the container's previous run (its
	// writable layer and its log), to move into the new sandbox.
	Carry string `json:"carry,omitempty"`
	// CID is the container's id, 64 hex digits as docker's (ids.go); ID
	// is its name.
	CID string `json:"cid,omitempty"`

	// Mounts are -v, --mount and --tmpfs, read (mounts.go).
	Mounts []mountOpt `json:"mounts,omitempty"`
}

func runCmd(ctx context.Context, g *globals, args []string) error {
	return runOrCreate(ctx, g, "run", args)
}

// runOrCreate is vc run and, for name "create", vc create: the container
// is created in its VM and left for vc start.
func runOrCreate(ctx context.Context, g *globals, name string, args []string) error {
	fs := newFlags(name, commands[name].usage)
	var o runOptions
	var vols, mounts, tmpfs, envs, envFiles, publish, dns, capAdd, capDrop, aliases, devices listFlag
	var mem, network, entrypoint, cpus, policyFile string
	fs.BoolVar(&o.Rm, "rm", false, "remove the container and its VM when it exits")
	fs.BoolVar(&o.Detach, "d", false, "run in the background and print the container id")
	fs.BoolVar(&o.Interactive, "i", false, "keep stdin open and forward it")
	fs.BoolVar(&o.TTY, "t", false, "allocate a terminal")
	fs.StringVar(&o.ID, "name", "", "container name (default: a random id)")
	fs.StringVar(&cpus, "cpus", "", fmt.Sprintf("the container's CPUs, fractions allowed (0.5): a CPU quota of the number; the VM gets them rounded up beside its own %d (within the host's CPUs)", hypervisor.DefaultCPUs))
	fs.StringVar(&mem, "memory", "", fmt.Sprintf("memory of the VM, e.g. 512M or 1G (default %dM, at least %dM)", hypervisor.DefaultMemoryMiB, hypervisor.MinMemoryMiB))
	fs.StringVar(&mem, "m", "", "the same as --memory")
	fs.Var(&vols, "v", "bind a host directory or file, HOST:CONTAINER[:ro] (a missing HOST is made a directory); mount a volume, NAME:CONTAINER[:ro] (made if missing); or an anonymous volume, CONTAINER (repeatable; vc volume)")
	fs.Var(&vols, "volume", "the same as -v")
	fs.Var(&mounts, "mount", "a mount, docker's fields: type=bind,source=HOST,target=CTR[,readonly][,bind-propagation=P] (HOST must exist); type=volume[,source=NAME],target=CTR[,readonly][,volume-nocopy]; type=tmpfs,target=CTR[,tmpfs-size=N][,tmpfs-mode=M] (repeatable)")
	fs.Var(&tmpfs, "tmpfs", "a tmpfs in the guest's memory: CONTAINER[:OPTS], OPTS as mount's (size=64m,mode=1777,exec...; default rw,noexec,nosuid,nodev) (repeatable)")
	fs.Var(&envs, "e", "set an environment variable: K=V, or K for the host's value of K (repeatable)")
	fs.Var(&envs, "env", "the same as -e")
	fs.Var(&envFiles, "env-file", "read K=V lines from a file (repeatable)")
	fs.StringVar(&o.Workdir, "w", "", "working directory in the container")
	fs.StringVar(&o.Workdir, "workdir", "", "the same as -w")
	fs.StringVar(&o.User, "u", "", "the process's user: USER[:GROUP], names or ids (names from the image's /etc/passwd and /etc/group)")
	fs.StringVar(&o.User, "user", "", "the same as -u")
	fs.StringVar(&entrypoint, "entrypoint", "", "run this program, with the command as its arguments")
	fs.StringVar(&o.Hostname, "hostname", "", "the container's hostname (default: the container id, shortened)")
	fs.BoolVar(&o.ReadOnly, "read-only", false, "mount the container's root filesystem read-only")
	fs.BoolVar(&o.Privileged, "privileged", false, "all capabilities, no masked /proc paths, writable /sys, in the guest (the VM still isolates the host)")
	fs.BoolVar(&o.Init, "init", false, "run an init (tini, as docker's --init) as PID 1: it reaps zombies and forwards signals to the command")
	fs.Var(&devices, "device", "pass a host device, HOSTPATH[:CONTAINERPATH[:PERMS]] (PERMS of r, w, m; default rwm): a block device is hotplugged into the VM as a disk; a char device only if the guest has its own (null, zero, random, tty, fuse...) (repeatable)")
	fs.Var(&capAdd, "cap-add", "add a capability, e.g. NET_ADMIN or ALL (repeatable)")
	fs.Var(&capDrop, "cap-drop", "drop a capability, e.g. CHOWN or ALL (repeatable)")
	fs.StringVar(&o.Rootfs, "rootfs", "", "run this directory as the root filesystem instead of IMAGE")
	fs.StringVar(&o.Kernel, "kernel", "", "guest kernel (default: the built guest image)")
	fs.StringVar(&o.Initrd, "initrd", "", "guest initrd (default: the built guest image)")
	fs.StringVar(&o.Accel, "accel", "auto", "acceleration: auto, kvm or tcg")
	fs.StringVar(&policyFile, "policy", "", "an agent policy (a Rego document, package agent_policy, Kata's rule names: docs/security.md) the VM's agent enforces on every request; the VM boots the policy image")
	fs.StringVar(&network, "network", "nat", "nat (outbound NAT through the host, ports published with -p), none (loopback only), a user network (vc network create NAME: the NAT and the network's bridge, where containers reach each other by name), or a network namespace the VM joins (/var/run/netns/X, /proc/PID/ns/net)")
	fs.StringVar(&o.IP, "ip", "", "the container's IPv4 address on its user network (default: the first free)")
	fs.Var(&aliases, "network-alias", "another name of the container on its user network (repeatable)")
	fs.StringVar(&network, "net", "nat", "the same as --network")
	fs.StringVar(&o.SharedFS, "shared-fs", "", "how the container's files reach the VM: 9p (the default) or virtio-fs (a virtiofsd per VM: faster lookups, QEMU without capabilities, slower bulk reads under TCG; never from the factory's template; docs/performance.md)")
	fs.StringVar(&o.Factory, "factory", "auto", "start the VM from the factory's template (vc factory init): auto (when there is one and the VM fits it), on (fail otherwise), off (boot)")
	fs.Var(&dns, "dns", "the resolver the container's DNS queries (to the NAT's 10.0.2.3) go to, an IPv4 address; the first given answers (repeatable; --network nat or a user network; root; default: the host's resolver)")
	fs.Var(&publish, "p", "publish a container port on the host: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp] (repeatable; --network nat or a user network)")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	rest := fs.Args()
	if o.Rootfs == "" {
		if len(rest) == 0 {
			fs.Usage()
			return fmt.Errorf("IMAGE: missing (try: vc run --rm busybox -- uname -r)")
		}
		o.Image, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	o.Args = rest
	if entrypoint != "" {
		o.Entrypoint = []string{entrypoint}
	}
	var err error
	if o.Env, err = resolveEnv(envs, envFiles); err != nil {
		return err
	}
	o.Debug, o.CapAdd, o.CapDrop, o.Devices = g.debug, capAdd, capDrop, devices
	if policyFile != "" {
		b, err := os.ReadFile(policyFile)
		if err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
		if len(b) == 0 {
			return fmt.Errorf("--policy %s: empty", policyFile)
		}
		o.Policy = string(b)
	}
	for i, d := range devices {
		if _, _, err := parseDevice(d); err != nil {
			return fmt.Errorf("--device #%d %q: %w", i+1, d, err)
		}
	}
	if o.Mounts, err = mountOptions(vols, mounts, tmpfs); err != nil {
		return err
	}
	for _, c := range capAdd {
		if _, err := capName("--cap-add", c); err != nil {
			return err
		}
	}
	for _, c := range capDrop {
		if _, err := capName("--cap-drop", c); err != nil {
			return err
		}
	}
	if o.NetNS, o.NoNAT, o.Network, o.Publish, err = networkOptions(network, publish); err != nil {
		return err
	}
	o.Aliases = aliases
	switch {
	case o.Network == "" && o.IP != "":
		return fmt.Errorf("--ip %q: an address on a user network, which needs --network NAME: %w", o.IP, errdefs.ErrInvalidArgument)
	case o.Network == "" && len(aliases) > 0:
		return fmt.Errorf("--network-alias %q: a name on a user network, which needs --network NAME: %w", aliases[0], errdefs.ErrInvalidArgument)
	case o.Network != "":
		if err := checkUserNetwork(g, o.Network); err != nil {
			return err
		}
	}
	if o.DNS, err = dnsOptions(network, dns); err != nil {
		return err
	}
	if mem != "" {
		if o.MemoryMiB, err = parseMiB(mem); err != nil {
			return fmt.Errorf("--memory %q: %w", mem, err)
		}
		if o.MemoryMiB == 0 {
			return fmt.Errorf("--memory %q: less than 1 MiB", mem)
		}
		if _, err := hypervisor.CheckMemoryMiB("--memory", uint64(o.MemoryMiB)); err != nil {
			return err
		}
	}
	if o.CPUs, o.CPUQuota, err = parseCPUs(cpus); err != nil {
		return err
	}
	switch o.Factory {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--factory %q: want auto, on or off: %w", o.Factory, errdefs.ErrInvalidArgument)
	}
	if err := vc.CheckSharedFS("--shared-fs", o.SharedFS); err != nil {
		return err
	}
	o.CID = newContainerID()
	if o.ID == "" {
		o.ID = o.CID[:shortIDLen]
	}
	if name == "create" {
		o.Create, o.Detach = true, true
	}
	if o.TTY && !o.Detach && !isTerminal(os.Stdin) {
		return errors.New("-t: standard input is not a terminal")
	}
	if o.Detach {
		if err := spawnOwner(ctx, g, o); err != nil {
			return err
		}
		fmt.Println(o.ID)
		return nil
	}
	return runOwner(ctx, g, o, nil)
}

// networkOptions reads --network and -p: the network namespace to join,
// whether the NAT is off, the user network to join beside the NAT, and
// the ports to publish through the NAT.
func networkOptions(network string, publish []string) (netns string, noNAT bool, userNet string, ports []vc.PortMapping, err error) {
	switch {
	case network == "" || network == "nat":
	case network == "none":
		noNAT = true
	case strings.HasPrefix(network, "/"):
		netns = network
	default:
		if err := usernet.CheckName(network); err != nil {
			return "", false, "", nil, fmt.Errorf("--network %q: want nat, none or the path of a network namespace, or a user network's name (vc network ls): %w", network, errdefs.ErrInvalidArgument)
		}
		userNet = network
	}
	for i, p := range publish {
		if !withNAT(network) {
			return "", false, "", nil, fmt.Errorf("-p %q: publishing needs --network nat or a user network (not %q): %w", p, network, errdefs.ErrInvalidArgument)
		}
		m, err := vc.ParsePortMapping(p)
		if err != nil {
			return "", false, "", nil, fmt.Errorf("-p #%d: %w", i+1, err)
		}
		ports = append(ports, m)
	}
	return netns, noNAT, userNet, ports, nil
}

// withNAT tells whether --network network keeps the NAT: nat, and user
// networks.
func withNAT(network string) bool {
	return network != "none" && !strings.HasPrefix(network, "/")
}

// dnsOptions reads --dns: the NAT's upstream resolvers.
func dnsOptions(network string, dns []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, d := range dns {
		if !withNAT(network) {
			return nil, fmt.Errorf("--dns %q: names the NAT's resolver, which needs --network nat (not %q): %w", d, network, errdefs.ErrInvalidArgument)
		}
		a, err := netip.ParseAddr(d)
		if err != nil {
			return nil, fmt.Errorf("--dns #%d %q: %w: %w", i+1, d, err, errdefs.ErrInvalidArgument)
		}
		if err := hypervisor.CheckResolver(a); err != nil {
			return nil, fmt.Errorf("--dns #%d: %w", i+1, err)
		}
		out = append(out, a)
	}
	return out, nil
}
