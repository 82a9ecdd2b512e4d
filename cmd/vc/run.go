package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/spawn"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/imagestore"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/usernet"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("run", command{
		usage: "[--rm] [-d] [-i] [-t] [--name N] [--cpus N] [-m SIZE] [-v HOST:CTR[:ro]] [-v NAME:CTR[:ro]] [-v CTR] [--mount type=bind|volume|tmpfs,...] [--tmpfs CTR[:OPTS]] [-e K[=V]] [--env-file F] [-w DIR] [-u USER[:GROUP]] [--entrypoint P] [--hostname H] [--read-only] [--init] [--privileged] [--cap-add C] [--cap-drop C] [--rootfs DIR] [--network nat|none|NAME|NETNS] [--ip IP] [--network-alias A] [-p [IP:]HOST:CTR[/udp]] [--dns IP] IMAGE [-- CMD ARGS...]",
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
	CPUs        uint     `json:"cpus"`
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
	// Init runs docker's init (tini) as the container's PID 1.
	Init bool `json:"init,omitempty"`
	// Create leaves the container created: `vc start` starts it.
	Create bool `json:"create,omitempty"`
	// Factory is auto, on or off: whether the VM starts from the
	// factory's template (factory.go).
	Factory string `json:"factory,omitempty"`
	// ImageDigest is the manifest digest Image had when the container was
	// first run: vc start and vc restart run that image again, as docker
	// does, whatever the name points at now or if it points at nothing
	// (rmi -f keeps a container's image until the container goes).
	ImageDigest string `json:"image_digest,omitempty"`
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
	var vols, mounts, tmpfs, envs, envFiles, publish, dns, capAdd, capDrop, aliases listFlag
	var mem, network, entrypoint, cpus string
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
	fs.Var(&capAdd, "cap-add", "add a capability, e.g. NET_ADMIN or ALL (repeatable)")
	fs.Var(&capDrop, "cap-drop", "drop a capability, e.g. CHOWN or ALL (repeatable)")
	fs.StringVar(&o.Rootfs, "rootfs", "", "run this directory as the root filesystem instead of IMAGE")
	fs.StringVar(&o.Kernel, "kernel", "", "guest kernel (default: the built guest image)")
	fs.StringVar(&o.Initrd, "initrd", "", "guest initrd (default: the built guest image)")
	fs.StringVar(&o.Accel, "accel", "auto", "acceleration: auto, kvm or tcg")
	fs.StringVar(&network, "network", "nat", "nat (outbound NAT through the host, ports published with -p), none (loopback only), a user network (vc network create NAME: the NAT and the network's bridge, where containers reach each other by name), or a network namespace the VM joins (/var/run/netns/X, /proc/PID/ns/net)")
	fs.StringVar(&o.IP, "ip", "", "the container's IPv4 address on its user network (default: the first free)")
	fs.Var(&aliases, "network-alias", "another name of the container on its user network (repeatable)")
	fs.StringVar(&network, "net", "nat", "the same as --network")
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
	o.Debug, o.CapAdd, o.CapDrop = g.debug, capAdd, capDrop
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
	var vcpus uint32
	if vcpus, o.CPUQuota, err = parseCPUs(cpus); err != nil {
		return err
	}
	o.CPUs = uint(vcpus)
	switch o.Factory {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--factory %q: want auto, on or off: %w", o.Factory, errdefs.ErrInvalidArgument)
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

// runOwner creates the sandbox and container, runs it, and tears the VM
// down when it exits. Attached when ready is nil; a detached owner reports
// readiness (or the error) on ready and its output goes only to the log.
func runOwner(ctx context.Context, g *globals, o runOptions, ready *spawn.Ready) (err error) {
	detached := ready != nil
	// The exit code travels with the reason (exitError.ExitCode).
	report := func(err error) {
		ready.Report(err)
		ready = nil
	}
	defer func() { report(err) }()
	// A first run that fails leaves no anonymous volume behind: no
	// container has it (a run again keeps the container's).
	running := false
	defer func() {
		if !running && o.Carry == "" {
			removeAnonymousVolumes(context.WithoutCancel(ctx), g, o)
		}
	}()

	// Its volumes are made here, its record saved after the VM's boot:
	// vc volume rm waits for it.
	releaseVolumes, err := reserveVolumes(g)
	if err != nil {
		return err
	}
	defer func() { releaseVolumes() }()
	ccfg, src, err := containerConfig(g, &o)
	if err != nil {
		return err
	}
	// Bad input fails before a VM boots (with 126 for a command that
	// cannot be invoked: an environment execve refuses).
	if err := ccfg.Validate(); err != nil {
		return startError(err)
	}
	scfg, err := sandboxConfig(ctx, g, o)
	if err != nil {
		return err
	}
	if o.Network != "" {
		// Its address is this process's until the VM is gone.
		nic, leave, err := joinNetwork(g, o)
		if err != nil {
			return err
		}
		defer leave()
		scfg.Bridges = []vc.BridgeNIC{nic}
	}
	s, err := vc.CreateSandbox(ctx, scfg)
	if err != nil {
		return err
	}
	// Until the container runs, a failure removes everything. A container
	// run again gives back what it wrote to the carry directory first,
	// for vc start to put the container back as it was.
	failed := true
	defer func() {
		if failed {
			s.Stop(context.WithoutCancel(ctx), 5*time.Second)
			if o.Carry != "" {
				if err := giveBack(s.Dir(), o.Carry); err != nil {
					slog.Error("run again failed: the container's files stay in its sandbox", "id", o.ID, "err", err)
					return
				}
			}
			s.Delete(context.WithoutCancel(ctx))
		}
	}()
	if src.image != nil {
		o.ImageDigest = src.image.Digest
	}
	if err := saveOptions(s.Dir(), o); err != nil {
		return err
	}
	releaseVolumes()
	releaseVolumes = func() {}
	if o.Carry != "" {
		if err := carryIn(o.Carry, s.Dir()); err != nil {
			return err
		}
	}
	ccfg.LogPath = filepath.Join(s.Dir(), "container.log")
	if o.Rootfs == "" {
		// An image: the container writes into a layer of its own. A
		// --rootfs directory is the user's, written as runc writes a
		// bundle's.
		if ccfg.Rootfs, err = mountRootfs(s.Dir(), src); err != nil {
			return err
		}
	}
	if err := copyUpVolumes(g, o, ccfg.Rootfs); err != nil {
		return err
	}
	// As docker: /etc/hosts, /etc/hostname and, behind the NAT, the
	// NAT's resolver, unless -v binds files of the user's there.
	if err := s.BindEtcFiles(&ccfg); err != nil {
		return err
	}
	if o.Network != "" {
		if err := publishNames(g, s, o); err != nil {
			return err
		}
	}
	if err := s.CreateContainer(ctx, ccfg); err != nil {
		return startError(err)
	}
	clog, err := openContainerLog(ccfg.LogPath)
	if err != nil {
		return err
	}
	defer clog.Close()
	logOut, logErr := clog.stream("stdout"), clog.stream("stderr")
	defer logOut.Flush()
	defer logErr.Flush()

	var stdin io.WriteCloser
	pio := vc.IO{Stdout: logOut, Stderr: logErr}
	if detached && o.Interactive {
		// In the background, stdin is what attached clients send.
		pio.Stdin, stdin = io.Pipe()
		defer stdin.Close()
	}
	att, err := serveAttach(s.Dir(), stdin)
	if err != nil {
		return err
	}
	defer att.Close()
	pio.Stdout = io.MultiWriter(pio.Stdout, att.stream(1))
	pio.Stderr = io.MultiWriter(pio.Stderr, att.stream(2))
	var restore func()
	if !detached {
		pio.Stdout = io.MultiWriter(os.Stdout, pio.Stdout)
		pio.Stderr = io.MultiWriter(os.Stderr, pio.Stderr)
		if o.Interactive {
			pio.Stdin = os.Stdin
		}
		// As docker: the local terminal is raw only when it feeds the
		// container's (-i -t); with -t alone Ctrl-C stays a signal.
		if o.TTY && o.Interactive {
			if restore, err = rawTerminal(); err != nil {
				return err
			}
			defer restore()
		}
	}
	if o.TTY {
		pio.Stderr = nil
	}
	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStreams()
	streams := s.Container(o.ID).IOStream(streamCtx, o.ID, pio)
	if !o.Create {
		if err := s.Container(o.ID).Start(ctx); err != nil {
			return startError(err)
		}
	}
	// Created, the container is vc start's to start; its failure to
	// start is that command's to report, and its record stays.
	failed, running = false, true
	if pio.Stdin == nil {
		s.Container(o.ID).CloseStdin(ctx, o.ID)
	}
	report(nil)
	// A signal to the owner, attached or detached, is the container's.
	stopSignals := forwardSignals(ctx, s, o.ID, o.TTY, o.TTY && o.Interactive)
	defer stopSignals()

	code, werr := s.Container(o.ID).Wait(context.WithoutCancel(ctx))
	select {
	case <-streams:
	case <-time.After(5 * time.Second):
	}
	att.Close()
	logOut.Flush()
	logErr.Flush()
	if restore != nil {
		restore()
	}
	s.Stop(context.WithoutCancel(ctx), 10*time.Second)
	if o.Rm {
		// Gone already if someone removed it meanwhile (vc rm -f).
		if err := s.Delete(context.WithoutCancel(ctx)); err != nil && !errdefs.IsNotFound(err) {
			fmt.Fprintf(os.Stderr, "vc run: remove %s: %v\n", o.ID, err)
		} else {
			removeAnonymousVolumes(context.WithoutCancel(ctx), g, o)
		}
	}
	if werr != nil {
		return werr
	}
	return exitError{code: int(code)}
}

// forwardSignals passes the signals a person sends `vc run` on to the
// container, as docker does. With a terminal, Ctrl-C travels as a byte and
// only window size changes need forwarding.
func forwardSignals(ctx context.Context, s *vc.Sandbox, id string, tty, raw bool) func() {
	return forwardExecSignals(ctx, s, id, id, tty, raw)
}

// forwardExecSignals does what forwardSignals does for process execID. A
// terminal's size changes are forwarded too; a raw terminal carries Ctrl-C
// and friends as bytes, so then only the size is.
func forwardExecSignals(ctx context.Context, s *vc.Sandbox, id, execID string, tty, raw bool) func() {
	// The SIGTERM this forwards also cancels the command's context (see
	// main): the forwarding must outlive it.
	ctx = context.WithoutCancel(ctx)
	ch := make(chan os.Signal, 8)
	if tty {
		signal.Notify(ch, unix.SIGWINCH)
		resize(ctx, s, id, execID)
	}
	if !raw {
		signal.Notify(ch, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				if sig == unix.SIGWINCH {
					resize(ctx, s, id, execID)
					continue
				}
				s.Container(id).SignalProcess(ctx, execID, uint32(sig.(unix.Signal)))
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func resize(ctx context.Context, s *vc.Sandbox, id, execID string) {
	if sz, ok := terminalSize(); ok {
		s.Container(id).ResizeTerminal(ctx, execID, uint32(sz.Height), uint32(sz.Width))
	}
}

// terminalSize is the size of the terminal on stdin, stdout or stderr, if
// one is a terminal. A detached owner has none (console.Current panics
// then).
func terminalSize() (console.WinSize, bool) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if c, err := console.ConsoleFromFile(f); err == nil {
			if sz, err := c.Size(); err == nil {
				return sz, true
			}
		}
	}
	return console.WinSize{}, false
}

func rawTerminal() (func(), error) {
	c := console.Current()
	if err := c.SetRaw(); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	return func() { c.Reset() }, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// imageSource is what a container's root filesystem is made of: a
// directory (--rootfs, or the built-in busybox), or an image of the store.
type imageSource struct {
	store *imagestore.Store
	image *imagestore.Image // nil: a directory
	// lowers are the image's directories, top first (a directory: it
	// alone).
	lowers []string
}

// resolveImage finds what o runs: --rootfs, an image of the store, or,
// when the store has no image of that name, the built-in busybox.
func resolveImage(g *globals, o runOptions) (imageSource, error) {
	if o.Rootfs != "" {
		return imageSource{lowers: []string{o.Rootfs}}, nil
	}
	st, err := openImageStore(g)
	if err != nil {
		return imageSource{}, err
	}
	var img *imagestore.Image
	if o.ImageDigest != "" {
		// Run again: the image it was run with.
		if img, err = st.GetDigest(o.Image, o.ImageDigest); err != nil {
			return imageSource{}, fmt.Errorf("IMAGE %q (%s): the container's image is gone from the store: %w", o.Image, o.ImageDigest, err)
		}
	} else {
		img, err = st.Get(o.Image)
	}
	switch {
	case err == nil:
		lowers := make([]string, 0, len(img.Layers))
		for i := len(img.Layers) - 1; i >= 0; i-- {
			lowers = append(lowers, st.LayerDir(img.Layers[i].DiffID))
		}
		return imageSource{store: st, image: img, lowers: lowers}, nil
	case !errdefs.IsNotFound(err):
		return imageSource{}, err
	case o.Image == "busybox":
		dir, err := rootfs.Busybox(filepath.Join(g.dataRoot, "rootfs"))
		if err != nil {
			return imageSource{}, err
		}
		return imageSource{lowers: []string{dir}}, nil
	}
	return imageSource{}, fmt.Errorf("IMAGE %q: unknown: not in the image store (vc pull or vc load it; the built-in image is busybox), or use --rootfs DIR: %w", o.Image, errdefs.ErrNotFound)
}

// processOf is the container's command line, environment, directory and
// user: the image config's Entrypoint, Cmd, Env, WorkingDir and User, with
// docker's overrides on top (--entrypoint, which drops the image's Cmd;
// arguments, which replace Cmd; -e; -w; -u).
func processOf(src imageSource, o runOptions) (args, env []string, cwd, user string, err error) {
	var c v1.Config
	if src.image != nil && src.image.Config != nil {
		c = src.image.Config.Config
	}
	entrypoint, cmd := c.Entrypoint, c.Cmd
	if len(o.Entrypoint) > 0 {
		entrypoint, cmd = o.Entrypoint, nil
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	args = append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		if src.image != nil {
			return nil, nil, "", "", fmt.Errorf("IMAGE %q: no command: the image has no Entrypoint or Cmd and none was given: %w", o.Image, errdefs.ErrInvalidArgument)
		}
		args = []string{"sh"}
	}
	env = mergeEnv(oci.DefaultEnv, c.Env, o.Env)
	cwd, user = c.WorkingDir, c.User
	if o.Workdir != "" {
		cwd = o.Workdir
	}
	if o.User != "" {
		user = o.User
	}
	return args, env, cwd, user, nil
}

// mergeEnv joins K=V lists, a later list's K replacing an earlier's in
// place (a process reads the first of two).
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, e := range l {
			k, _, _ := strings.Cut(e, "=")
			if i, ok := at[k]; ok {
				out[i] = e
				continue
			}
			at[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// containerConfig builds the container from the run options; Rootfs is
// the image's top directory until mountRootfs gives the container its
// layer. The image's VOLUMEs join o's mounts, anonymous volumes, for the
// container's record to keep.
func containerConfig(g *globals, po *runOptions) (vc.ContainerConfig, imageSource, error) {
	src, err := resolveImage(g, *po)
	if err != nil {
		return vc.ContainerConfig{}, src, err
	}
	po.Mounts = append(po.Mounts, imageVolumes(src, po.Mounts)...)
	o := *po
	args, env, cwd, user, err := processOf(src, o)
	if err != nil {
		return vc.ContainerConfig{}, src, err
	}
	spec := oci.DefaultSpec(args, nil, cwd, o.TTY)
	spec.Process.Env = env
	spec.Hostname = o.Hostname
	spec.Root.Readonly = o.ReadOnly
	if o.CPUQuota > 0 {
		quota, period := o.CPUQuota, uint64(cpuPeriod)
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if o.Privileged {
		privileged(spec)
	}
	if o.Init {
		if err := withInit(spec); err != nil {
			return vc.ContainerConfig{}, src, err
		}
	}
	if err := applyCapabilities(spec.Process, o.CapAdd, o.CapDrop); err != nil {
		return vc.ContainerConfig{}, src, err
	}
	if user != "" {
		field := "-u"
		if o.User == "" {
			field = fmt.Sprintf("IMAGE %q: User", o.Image)
		}
		if err := applyUser(spec.Process, src.lowers, user, field); err != nil {
			return vc.ContainerConfig{}, src, err
		}
	}
	if o.TTY {
		if sz, ok := terminalSize(); ok {
			spec.Process.ConsoleSize = &specs.Box{Height: uint(sz.Height), Width: uint(sz.Width)}
		}
	}
	for i, v := range o.Volumes {
		m, err := parseVolume(v)
		if err != nil {
			return vc.ContainerConfig{}, src, fmt.Errorf("-v #%d %q: %w", i+1, v, err)
		}
		if err := volumeSource(m.Source); err != nil {
			return vc.ContainerConfig{}, src, fmt.Errorf("-v #%d %q: %w", i+1, v, err)
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	ms, err := volumeMounts(g, o)
	if err != nil {
		return vc.ContainerConfig{}, src, err
	}
	spec.Mounts = append(spec.Mounts, ms...)
	ann := map[string]string{"vc.image": o.Image}
	if src.image != nil {
		ann[imageDigestAnnotation] = src.image.Digest
	}
	return vc.ContainerConfig{ID: o.ID, Rootfs: src.lowers[0], Spec: spec, Annotations: ann}, src, nil
}

// giveBack moves what a container run again had carried in back to its
// carry directory, its writable layer unmounted first.
func giveBack(dir, carry string) error {
	if err := mount.UnmountUnder(filepath.Join(dir, "layer")); err != nil {
		return err
	}
	return moveCarried(dir, carry)
}

// imageDigestAnnotation records the manifest digest of a container's
// image of the store: vc rmi refuses to remove an image a container has.
const imageDigestAnnotation = "vc.image.digest"

// mountRootfs gives a container of an image its writable layer over the
// image's directories, in the sandbox's directory dir; the store's lock
// keeps the layers there until the overlay holds them.
func mountRootfs(dir string, src imageSource) (string, error) {
	if src.image == nil {
		return containerLayer(dir, src.lowers)
	}
	lowers, release, err := src.store.Acquire(src.image)
	if err != nil {
		return "", err
	}
	defer release()
	return containerLayer(dir, lowers)
}

// sandboxConfig builds the sandbox (VM) from the run options.
func sandboxConfig(ctx context.Context, g *globals, o runOptions) (vc.SandboxConfig, error) {
	kernel, initrd, err := guestImage(ctx, g, o.Kernel, o.Initrd)
	if err != nil {
		return vc.SandboxConfig{}, err
	}
	scfg := vc.SandboxConfig{
		ID:        o.ID,
		Hostname:  o.Hostname,
		StateRoot: g.stateRoot,
		NetNS:     o.NetNS,
		NAT:       vc.NATConfig{Disabled: o.NoNAT, Publish: o.Publish, DNS: o.DNS},
		Hypervisor: vc.HypervisorConfig{
			Kernel:    kernel,
			Initrd:    initrd,
			Accel:     o.Accel,
			MemoryMiB: o.MemoryMiB,
			Debug:     o.Debug,
		},
	}
	// --cpus is the container's limit: the VM is sized by the library's
	// one rule, the guest's own vCPU plus the limit rounded up (within
	// the host's CPUs), as the shim and vc-runtime size theirs.
	if o.CPUs > 0 {
		scfg.Hypervisor.AddWorkload(uint32(o.CPUs), 0)
	}
	if err := useFactory(g, o.Factory, &scfg); err != nil {
		return vc.SandboxConfig{}, err
	}
	return scfg, nil
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

// spawnOwner runs the owner in a new session (internal/spawn) and waits
// until the container runs, or is created (o.Create), or failed.
func spawnOwner(ctx context.Context, g *globals, o runOptions) error {
	if err := os.MkdirAll(g.stateRoot, 0o700); err != nil {
		return err
	}
	// A log of its own: two racing `run -d --name X` must not share one
	// (the loser would remove the winner's).
	logf, err := os.CreateTemp(g.stateRoot, "."+o.ID+".owner-*.log")
	if err != nil {
		return err
	}
	defer logf.Close()
	logPath := logf.Name()
	args := []string{"--state-root", g.stateRoot, "--data-root", g.dataRoot}
	if g.debug {
		args = append(args, "--debug")
	}
	_, err = spawn.Start(spawn.Options{
		Args:    append(args, "__run-owner"),
		Payload: o,
		Stdout:  logf,
		Stderr:  logf,
		Died:    func(*exec.Cmd) string { return ownerDied(logPath) },
	})
	if err != nil {
		os.Remove(logPath)
		return ownerError(err)
	}
	// The owner keeps writing there: keep its log with the sandbox's
	// state (removed with it), where it tells why an owner died.
	if err := os.Rename(logPath, filepath.Join(g.stateRoot, o.ID, ownerLogName)); err != nil {
		os.Remove(logPath)
	}
	return nil
}

// ownerLogName is the detached owner's log in its sandbox's state
// directory.
const ownerLogName = "owner.log"

func runOwnerCmd(ctx context.Context, g *globals, args []string) error {
	var o runOptions
	ready, err := spawn.Child(&o)
	if len(args) != 0 || err != nil {
		return errors.New("internal command; use vc run -d")
	}
	return runOwner(ctx, g, o, ready)
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ownerError is the error `vc run -d` ends with when its owner reported
// one: with the exit code the owner gave (docker's, for a container that
// could not start).
func ownerError(err error) error {
	var se *spawn.Error
	if errors.As(err, &se) && se.Code != 0 {
		return exitError{code: se.Code, err: errors.New(se.Msg)}
	}
	return err
}

// ownerDied tells why an owner exited without a report: its log.
func ownerDied(logPath string) string {
	b, _ := os.ReadFile(logPath)
	return "owner process died: " + strings.TrimSpace(string(b))
}

// startError gives a container that could not start the exit code docker
// gives it: 127 when the command does not exist, 126 when it cannot be
// invoked, 125 (vc's own) otherwise.
func startError(err error) error {
	code := 125
	switch {
	case errors.Is(err, vc.ErrCommandNotFound):
		code = 127
	case errors.Is(err, vc.ErrCommandNotRunnable):
		code = 126
	}
	return exitError{code: code, err: err}
}
