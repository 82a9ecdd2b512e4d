package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/cleanup"
	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/spawn"
	"github.com/virtcontainers/vc/pkg/factory"
	vcnet "github.com/virtcontainers/vc/pkg/network"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

func init() {
	register("__owner", command{run: ownerCmd})
}

// ownerCmd is the owner process: it boots the container's VM, creates the
// container, reports readiness on fd 3, serves the control socket and,
// once the container has run, stops the VM and exits with the
// container's exit status.
func ownerCmd(ctx context.Context, g *globals, args []string) error {
	var oo ownerOptions
	ready, err := spawn.Child(&oo)
	if len(args) != 0 || err != nil {
		return errors.New("internal command of vc-runtime create")
	}
	// stdout and stderr are the container's: the owner logs to --log or
	// to owner.log, and so does the library.
	if g.logFile == nil {
		f, err := os.OpenFile(filepath.Join(containerDir(g.root, oo.ID), ownerLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			ready.Report(fmt.Errorf("owner log: %w", err))
			return exitError{1}
		}
		g.logFile = f
		h, _ := logHandler(f, g.logFormat, g.debug)
		g.log = slog.New(h)
	}
	g.log = g.log.With("container", oo.ID)
	slog.SetDefault(g.log)
	// ttRPC logs through logrus, to stderr by default: the container's
	// stderr here ("received message on inactive stream" when the VM
	// stops).
	logrus.SetOutput(g.logFile)
	// Hold no directory of the caller's (a mount it may want to remove).
	if err := os.Chdir("/"); err != nil {
		ready.Report(err)
		return exitError{1}
	}
	o := &owner{g: g, id: oo.ID, dir: containerDir(g.root, oo.ID), log: g.log}
	err = o.create(ctx, oo)
	if err != nil {
		g.log.Error("create failed", "err", err)
		ready.Report(err)
		return exitError{1}
	}
	ready.Report(nil)
	code := o.run(ctx)
	return exitError{code}
}

// owner keeps one container's VM.
type owner struct {
	g   *globals
	id  string
	dir string
	log *slog.Logger

	sb   *vc.Sandbox
	c    *vc.Container
	own  *vcowner.Owner
	tty  *os.File
	quit chan struct{} // ends hostGone's watch

	// size is the terminal size last given to the container's.
	sizeMu sync.Mutex
	size   unix.Winsize

	// st is the state file's; the owner's lock (OnState) guards its
	// status.
	st *containerState

	// host is the container whose owner keeps the VM this container
	// joined (a pod's); empty when this owner keeps the VM.
	host   string
	hostSt *containerState

	// poststart are the spec's poststart hooks, run by start with the
	// spec's annotations in their state.
	poststart   []specs.Hook
	annotations map[string]string
	// vmMu guards vmDown: requests for the VM's other containers hold it
	// to read while they use the VM, the teardown to write.
	vmMu   sync.RWMutex
	vmDown bool
}

// create boots the VM, or joins the VM of the container st.Sandbox names,
// and creates the container, with its streams connected. On error
// nothing it made is left.
func (o *owner) create(ctx context.Context, oo ownerOptions) (err error) {
	st, err := loadState(o.g.root, o.id)
	if err != nil {
		return err
	}
	o.st = st
	spec, err := loadSpec(st.Bundle)
	if err != nil {
		return err
	}
	if spec.Hooks != nil {
		o.poststart, o.annotations = spec.Hooks.Poststart, spec.Annotations
	}
	st.OwnerPid = os.Getpid()
	if st.OwnerStart, err = proc.StartTime(st.OwnerPid); err != nil {
		return err
	}
	if err := st.save(o.g.root); err != nil {
		return err
	}
	cu := cleanup.Make(func() {})
	defer cu.Clean()

	if n := ignoredHooks(spec); n > 0 {
		o.log.Warn("the spec's createContainer and startContainer hooks are not run (they would run in the VM)", "hooks", n)
	}
	if st.Sandbox == "" {
		err = o.bootVM(ctx, st, spec)
	} else {
		err = o.joinVM(ctx, st.Sandbox)
	}
	if err != nil {
		return err
	}
	cu.Add(o.leave)

	cu.Add(func() {
		if o.tty != nil {
			o.tty.Close()
		}
	})
	// The container's life is pkg/vc/owner's: its status, its control
	// socket's requests, its wait. This owner's part is the state file,
	// the console, the hooks and the pod.
	o.quit = make(chan struct{})
	cfg := vcowner.Config{
		IO:      func(*vc.Container) (vc.IO, error) { return o.stdio(spec, oo.ConsoleSocket) },
		Control: filepath.Join(o.dir, ownerSocket),
		Handle:  o.handleMember,
		Ops:     containerOps{o},
		Signals: true,
		BeforeStart: func() {
			if o.tty != nil {
				o.startSize(o.tty)
			}
		},
		AfterStart: o.poststartHooks,
		OnState:    o.saveState,
		Log:        o.log,
	}
	if o.host != "" {
		cfg.Gone = o.hostGone(o.quit)
	}
	if o.own, err = vcowner.New(ctx, cfg, o.c); err != nil {
		close(o.quit)
		return err
	}
	cu.Release()
	return nil
}

// bootVM boots the container's own VM and creates the container in it.
// On error nothing it made is left.
func (o *owner) bootVM(ctx context.Context, st *containerState, spec *specs.Spec) error {
	ccfg := vc.ContainerConfig{ID: o.id, Rootfs: st.Rootfs, Spec: spec, Annotations: map[string]string{"bundle": st.Bundle}}
	if err := ccfg.Validate(); err != nil {
		return err
	}
	kernel, initrd, err := guestconfig.Resolve(ctx, o.g.dataRoot, "", "", true)
	if err != nil {
		return err
	}
	hc := vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: o.g.accel, Debug: o.g.debug}
	if err := hc.SizeFor(spec); err != nil {
		return err
	}
	netns, nat := network(spec)
	cu := cleanup.Make(func() {})
	defer cu.Clean()
	if hooks := createHooks(spec); len(hooks) > 0 {
		state := specs.State{Version: specs.Version, ID: o.id, Status: specs.StateCreating, Bundle: st.Bundle, Annotations: spec.Annotations}
		if newNetNS(spec) {
			// The hooks may put links into it (docker's libnetwork-setkey),
			// which the VM mirrors.
			path := filepath.Join(o.dir, netnsFile)
			err := vcnet.MakeNetNS(path, func(tid int) error {
				state.Pid = tid
				return runHooks(ctx, hooks, state)
			})
			if err != nil {
				return err
			}
			cu.Add(func() { vcnet.RemoveNetNS(path) })
			netns, nat = path, vc.NATConfig{}
		} else {
			state.Pid = os.Getpid()
			if err := runHooks(ctx, hooks, state); err != nil {
				return err
			}
		}
	}
	scfg := vc.SandboxConfig{
		ID:         sandboxID,
		Hostname:   spec.Hostname,
		StateRoot:  o.dir,
		NetNS:      netns,
		NAT:        nat,
		Hypervisor: hc,
	}
	if o.g.factory != "" {
		switch err := factory.Use(&scfg, o.g.factory); {
		case errdefs.IsNotFound(err):
			o.log.Warn("factory without a template: booting", "factory", o.g.factory)
		case errors.Is(err, factory.ErrTemplateMismatch):
			o.log.Info("the VM does not fit the factory's template: booting", "why", err)
		case err != nil:
			return fmt.Errorf("--factory: %w", err)
		}
	}
	start := time.Now()
	booted := false
	// The VM is up: the files docker writes, for a spec whose engine
	// did not bind its own (podman's and docker's are never overridden).
	prepare := func(_ context.Context, sb *vc.Sandbox, c *vc.ContainerConfig) error {
		booted = true
		o.log.Info("VM booted", "vm_pid", sb.Status().VMPid, "accel", sb.Status().Accel, "from_template", sb.Status().Boot.FromTemplate, "took", time.Since(start).Round(time.Millisecond))
		return sb.BindEtcFiles(c)
	}
	sb, err := vcowner.Boot(ctx, vcowner.BootConfig{Sandbox: scfg, Container: ccfg, Prepare: prepare})
	if err != nil {
		var ce *vcowner.ContainerError
		if !booted && !errors.As(err, &ce) {
			return fmt.Errorf("boot the VM: %w", err)
		}
		return err
	}
	o.sb, o.c = sb, sb.Container(o.id)
	cu.Release()
	return nil
}

// leave tears down what create made of the VM: the VM this owner keeps,
// or its container in the VM it joined.
func (o *owner) leave() {
	if o.host != "" {
		o.leaveVM()
		return
	}
	// Requests for the VM's other containers are done with it first.
	o.vmMu.Lock()
	o.vmDown = true
	o.vmMu.Unlock()
	vcowner.Teardown(context.Background(), o.sb, vcowner.StopTimeout, true, o.log)
	if err := vcnet.RemoveNetNS(filepath.Join(o.dir, netnsFile)); err != nil {
		o.log.Warn("remove the network namespace", "err", err)
	}
}

// network is the VM's network for the spec's network namespace, as runc
// would give it: a namespace named by path (podman's, CNI's) is joined,
// its links mirrored into the VM; a new namespace (no path: podman
// --network none, runc spec's default) has loopback only; no network
// namespace at all (the host's network: podman --network host) gets the
// user-mode NAT, outbound through the host.
func network(spec *specs.Spec) (netns string, nat vc.NATConfig) {
	if spec.Linux == nil {
		return "", nat
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			if ns.Path == "" {
				nat.Disabled = true
			}
			return ns.Path, nat
		}
	}
	return "", nat
}
