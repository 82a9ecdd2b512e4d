package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/virtcontainers/vc/internal/cleanup"
	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

// Sandbox annotations the shim records in pkg/vc's state, so that `shim
// delete` touches only what a shim of the same containerd namespace made.
const (
	annNamespace = "io.containerd.namespace"
	annBundle    = "io.containerd.bundle"
)

// Create creates a task: the sandbox container boots the VM; every
// container is created in the VM with its standard streams connected.
func (s *Service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
	pid, err := s.create(ctx, r)
	if err != nil {
		s.log.Error("create failed", "container", r.ID, "err", err)
		return nil, errgrpc.ToGRPC(err)
	}
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
}

func (s *Service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ uint32, err error) {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if _, err := s.getContainer(r.ID); err == nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	if r.Checkpoint != "" || r.ParentCheckpoint != "" {
		return 0, fmt.Errorf("create from checkpoint %q: %w", r.Checkpoint, errdefs.ErrNotImplemented)
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return 0, err
	}
	if spec.Process == nil || len(spec.Process.Args) == 0 {
		return 0, fmt.Errorf("container %s: spec.process.args: empty: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	typ, sid, err := annotations.ContainerTypeOf(r.ID, spec.Annotations)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, err)
	}
	// A CRI pod that asks for the host's namespaces (hostNetwork, ...) is
	// refused. A container of its own (`ctr run`, containerd's shim
	// conformance suite) whose spec leaves a namespace out runs in the
	// VM's: for the network, the user-mode NAT, which gives it the
	// outbound network a container without a network namespace has.
	if typ != annotations.SingleContainer {
		if err := refuseHostNamespaces(spec); err != nil {
			return 0, fmt.Errorf("container %s: %w", r.ID, err)
		}
	}
	cfg := s.config()
	if typ.BootsVM() {
		if cfg, err = configFromOptions(r.Options, cfg); err != nil {
			return 0, fmt.Errorf("container %s: %w", r.ID, err)
		}
	}
	overrides, err := annotations.ParseSandboxAnnotations(spec.Annotations, cfg.EnableAnnotations)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, err)
	}
	log := s.log.With("sandbox", sid, "container", r.ID)
	c := &container{
		id: r.ID, bundle: r.Bundle, typ: typ, sandboxID: sid, spec: spec,
		log: log, execs: map[string]*process{},
	}

	sb := s.getSandbox()
	switch {
	case typ.BootsVM() && sb != nil:
		return 0, fmt.Errorf("container %s boots a sandbox, but this shim runs sandbox %s already: %w", r.ID, sb.ID(), errdefs.ErrFailedPrecondition)
	case !typ.BootsVM() && sb == nil:
		return 0, fmt.Errorf("container %s: sandbox %s (annotation %s) is not running in this shim: %w", r.ID, sid, annotations.CRISandboxID, errdefs.ErrFailedPrecondition)
	case !typ.BootsVM() && sb.ID() != sid:
		return 0, fmt.Errorf("container %s: sandbox %s (annotation %s) is not this shim's (%s): %w", r.ID, sid, annotations.CRISandboxID, sb.ID(), errdefs.ErrFailedPrecondition)
	}

	// Everything below is undone on error, in reverse order.
	cu := cleanup.Make(func() {})
	defer cu.Clean()

	c.rootfs, c.mounted, err = prepareRootfs(r, spec)
	if err != nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, err)
	}
	if c.mounted {
		cu.Add(func() { unmountRootfs(c.rootfs) })
	}

	c.init = newProcess(c, "", stdio{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}, nil)
	if c.init.io, err = openIO(ctx, log, s.ns, r.ID, c.init.stdio); err != nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, err)
	}
	cu.Add(c.init.io.closeAll)

	ccfg := vc.ContainerConfig{
		ID:          r.ID,
		Rootfs:      c.rootfs,
		Spec:        spec,
		Annotations: map[string]string{annBundle: r.Bundle},
		// A pod's sandbox container is in the pod's shared pid namespace,
		// as its containers that share it see it with runc.
		PrivatePidNS: !(typ == annotations.PodSandbox || joinsPidNS(spec)),
		// The pod's IPC and UTS namespaces are its sandbox container's,
		// which the other containers name by path (runc's semantics).
		PodInfra: typ == annotations.PodSandbox,
	}
	shareLoopback := false
	if typ.BootsVM() {
		scfg, err := s.sandboxConfig(ctx, cfg, c, overrides)
		if err != nil {
			return 0, fmt.Errorf("container %s: %w", r.ID, err)
		}
		shareLoopback = sharesLoopback(c, scfg)
		// The VM boots with its first container as every front end's
		// (pkg/vc/owner.Boot); the shim keeps the VM for the pod's others.
		start := time.Now()
		booted := func(_ context.Context, sb *vc.Sandbox, _ *vc.ContainerConfig) error {
			log.Info("sandbox booted", "vm_pid", sb.Status().VMPid, "accel", sb.Status().Accel, "cpus", scfg.Hypervisor.CPUs, "memory_mib", scfg.Hypervisor.MemoryMiB, "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if sb, err = vcowner.Boot(ctx, vcowner.BootConfig{Sandbox: scfg, Container: ccfg, Prepare: booted}); err != nil {
			var ce *vcowner.ContainerError
			if errors.As(err, &ce) {
				return 0, fmt.Errorf("container %s: %w", r.ID, ce.Err)
			}
			return 0, fmt.Errorf("container %s: boot the sandbox: %w", r.ID, err)
		}
		cu.Add(func() { vcowner.Teardown(ctx, sb, cfg.StopTimeout.Duration, true, log) })
	} else if err := sb.CreateContainer(ctx, ccfg); err != nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, err)
	}
	cu.Add(func() {
		if err := sb.Container(r.ID).Delete(context.WithoutCancel(ctx)); err != nil {
			log.Warn("remove container after a failed create", "err", err)
		}
	})

	// `shim delete` finds the sandbox's state through the bundle, whatever
	// configuration it was created with.
	if err := os.WriteFile(filepath.Join(r.Bundle, stateRootFile), []byte(cfg.StateRoot), 0o600); err != nil {
		return 0, fmt.Errorf("container %s: %w", r.ID, err)
	}

	// Output is copied from now on, so none is lost however soon the
	// process exits after Start.
	c.init.run = vcowner.StartProcess(ctx, sb.Container(r.ID), r.ID, c.init.io.vcIO(), c.init.io.outputEnded)
	cu.Release()

	s.mu.Lock()
	if typ.BootsVM() {
		s.sandbox = sb
		s.vmPid = uint32(sb.Status().VMPid)
		s.cfg = cfg
	}
	s.containers[r.ID] = c
	pid := s.vmPid
	s.mu.Unlock()
	if typ.BootsVM() {
		s.watchSandbox(sb, shareLoopback)
	}

	s.send(&eventstypes.TaskCreate{
		ContainerID: r.ID,
		Bundle:      r.Bundle,
		Rootfs:      r.Rootfs,
		IO:          &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         pid,
	})
	go s.watch(sb, c.init)
	log.Info("container created", "type", typ, "rootfs", c.rootfs, "io", c.init.io.kind)
	return pid, nil
}

// stateRootFile, in a bundle, holds the state root of the container's
// sandbox.
const stateRootFile = "vc-state-root"

// configFromOptions is the configuration a sandbox boots with: the file
// the runtime options name (CRI: the runtime's options.ConfigPath), else
// the shim's.
func configFromOptions(opts *anypb.Any, def Config) (Config, error) {
	if opts == nil || len(opts.GetValue()) == 0 {
		return def, nil
	}
	v, err := typeurl.UnmarshalAny(opts)
	if err != nil {
		return def, fmt.Errorf("runtime options %s: %w: %w", opts.GetTypeUrl(), err, errdefs.ErrInvalidArgument)
	}
	o, ok := v.(*runtimeoptions.Options)
	if !ok || o.GetConfigPath() == "" {
		return def, nil
	}
	cfg, err := LoadConfigFile(o.GetConfigPath())
	if err != nil {
		return def, fmt.Errorf("runtime options ConfigPath: %w", err)
	}
	return cfg, nil
}

// readSpec reads the bundle's config.json.
func readSpec(bundle string) (*specs.Spec, error) {
	if bundle == "" {
		return nil, fmt.Errorf("bundle: not set: %w", errdefs.ErrInvalidArgument)
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, errors.Join(err, errdefs.ErrInvalidArgument))
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %w: %w", bundle, err, errdefs.ErrInvalidArgument)
	}
	return &spec, nil
}

// prepareRootfs returns the host directory of the container's root
// filesystem: containerd's rootfs mounts mounted at <bundle>/rootfs (ours
// to unmount), or the spec's root.path. It must exist.
func prepareRootfs(r *taskAPI.CreateTaskRequest, spec *specs.Spec) (string, bool, error) {
	if len(r.Rootfs) == 0 {
		if spec.Root == nil || spec.Root.Path == "" {
			return "", false, fmt.Errorf("spec.root.path: empty and no rootfs mounts given: %w", errdefs.ErrInvalidArgument)
		}
		p := spec.Root.Path
		if !filepath.IsAbs(p) {
			p = filepath.Join(r.Bundle, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			return "", false, fmt.Errorf("spec.root.path %q: %w", spec.Root.Path, errors.Join(err, errdefs.ErrInvalidArgument))
		}
		if !st.IsDir() {
			return "", false, fmt.Errorf("spec.root.path %q: not a directory: %w", spec.Root.Path, errdefs.ErrInvalidArgument)
		}
		return p, false, nil
	}
	target := filepath.Join(r.Bundle, "rootfs")
	if err := os.MkdirAll(target, 0o711); err != nil {
		return "", false, fmt.Errorf("rootfs: %w", err)
	}
	mounts := mount.FromProto(r.Rootfs)
	// containerd's mount manager formats (format/, mkdir/, {{ mount N }})
	// are activated here when containerd left them to the shim.
	if err := activateMounts(mounts, filepath.Join(r.Bundle, activationDirName), target); err != nil {
		// A partial mount leaves layers behind.
		unmountRootfs(target)
		if !errdefs.IsNotImplemented(err) {
			err = errors.Join(err, errdefs.ErrInvalidArgument)
		}
		return "", false, fmt.Errorf("rootfs mounts (%s): %w", mounts[0].Type, err)
	}
	return target, true, nil
}

// unmountRootfs unmounts the rootfs at target (<bundle>/rootfs), then what
// was activated for it in the bundle.
func unmountRootfs(target string) error {
	if err := mount.UnmountRecursive(target, 0); err != nil {
		return fmt.Errorf("unmount rootfs %s: %w", target, err)
	}
	if err := deactivateMounts(filepath.Join(filepath.Dir(target), activationDirName)); err != nil {
		return fmt.Errorf("unmount rootfs %s: %w", target, err)
	}
	return nil
}

// guestImage returns the kernel and initrd to boot: the ones given (both or
// neither), or the current image under dataRoot if it was built from the
// installed agent. The shim never builds one (that takes minutes, longer
// than containerd waits): `vc image build` does.
//
// A sandbox with an agent policy boots the policy image (vc-agent-policy).
func guestImage(dataRoot, kernel, initrd string, policy bool) (string, string, error) {
	if kernel != "" || initrd != "" {
		if kernel == "" || initrd == "" {
			return "", "", fmt.Errorf("kernel %q and initrd %q: set both or neither: %w", kernel, initrd, errdefs.ErrInvalidArgument)
		}
		return kernel, initrd, nil
	}
	current := guestconfig.Current
	if policy {
		current = guestconfig.CurrentPolicy
	}
	img, err := current(dataRoot)
	if err != nil {
		return "", "", fmt.Errorf("%w (build one with `vc --data-root %s image build`, or set kernel and initrd in the shim's configuration)", err, dataRoot)
	}
	return img.Kernel, img.Initrd, nil
}

// sandboxPolicy is the agent policy of a sandbox: the annotation's (when
// allowed), else the configuration's policy_file, else none.
func sandboxPolicy(cfg Config, o annotations.SandboxOverrides) (string, error) {
	if o.Policy != nil {
		return *o.Policy, nil
	}
	if cfg.PolicyFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(cfg.PolicyFile)
	if err != nil {
		return "", fmt.Errorf("policy_file: %w", err)
	}
	if len(b) == 0 {
		return "", fmt.Errorf("policy_file %s: empty: %w", cfg.PolicyFile, errdefs.ErrInvalidArgument)
	}
	return string(b), nil
}

// netnsPath is the network namespace the VM joins: the one the spec
// names (CRI's pod network, set up by CNI; `ctr run --with-ns`). A spec
// without a path asks for a new, empty namespace, and one without a
// network namespace for the host's: either way the VM gets loopback only
// (it never joins the host's network namespace).
func netnsPath(spec *specs.Spec) string {
	if spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// joinsPidNS tells whether the spec puts the container in another's pid
// namespace (CRI: a pod sharing its process namespace, or a target
// container): in the VM it then joins the sandbox's shared one.
func joinsPidNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path != ""
		}
	}
	return false
}

// sandboxConfig is the VM the container boots: the shim's configuration,
// with the overrides its annotations asked for (and the configuration
// allowed).
func (s *Service) sandboxConfig(ctx context.Context, cfg Config, c *container, o annotations.SandboxOverrides) (vc.SandboxConfig, error) {
	kernel, initrd := cfg.Kernel, cfg.Initrd
	if o.Kernel != nil {
		kernel = *o.Kernel
	}
	if o.Initrd != nil {
		initrd = *o.Initrd
	}
	policy, err := sandboxPolicy(cfg, o)
	if err != nil {
		return vc.SandboxConfig{}, err
	}
	// A policy needs vc-agent-policy: the configured initrd's variant.
	if policy != "" && o.Initrd == nil && cfg.Initrd != "" {
		if cfg.PolicyInitrd == "" {
			return vc.SandboxConfig{}, fmt.Errorf("annotation %s: the configuration sets initrd and no policy_initrd (an initrd whose agent is vc-agent-policy): %w", annotations.AnnotationPolicy, errdefs.ErrFailedPrecondition)
		}
		initrd = cfg.PolicyInitrd
	}
	kernel, initrd, err = guestImage(cfg.DataRoot, kernel, initrd, policy != "")
	if err != nil {
		return vc.SandboxConfig{}, err
	}
	hc := vc.HypervisorConfig{
		Kernel:       kernel,
		Initrd:       initrd,
		KernelParams: append(append([]string(nil), cfg.KernelParams...), o.KernelParams...),
		Accel:        cfg.Accel,
		CPUs:         cfg.CPUs,
		MemoryMiB:    cfg.MemoryMiB,
		MaxCPUs:      cfg.MaxCPUs,
		MaxMemoryMiB: cfg.MaxMemoryMiB,
		Debug:        cfg.Debug,
		NoBalloon:    cfg.NoBalloon,
		User:         cfg.VMMUser,
		SharedFS:     cfg.SharedFS,
	}
	// The configured size is the guest's own; a CRI pod's limits (the
	// kubelet's sum, in the sandbox container's annotations) or a single
	// container's own come on top, as the kubelet and `ctr run
	// --memory-limit` expect them to fit.
	if cfg.PodSizing {
		if err := hc.SizeFor(c.spec); err != nil {
			return vc.SandboxConfig{}, err
		}
	}
	if o.CPUs != nil || o.MemoryMiB != nil {
		hc.SetSize(o.CPUs, o.MemoryMiB)
	}
	if o.Accel != nil {
		hc.Accel = *o.Accel
	}
	if o.Debug != nil {
		hc.Debug = *o.Debug
	}
	// A pod's containers may share its pid namespace (CRI gives them the
	// path of the sandbox's), so a pod's VM always has one to join; a
	// single container has one only if asked.
	shared := c.typ == annotations.PodSandbox || joinsPidNS(c.spec)
	if o.SharedPidNS != nil {
		shared = *o.SharedPidNS
	}
	nat := vc.NATConfig{Disabled: cfg.DisableNAT, HostLoopback: cfg.HostLoopback}
	if o.HostLoopback != nil {
		nat.HostLoopback = *o.HostLoopback
	}
	if o.Publish != nil {
		if nat.Publish, err = vc.ParsePortMappings(*o.Publish); err != nil {
			return vc.SandboxConfig{}, fmt.Errorf("annotation %s: %w", annotations.AnnotationPublish, err)
		}
	}
	scfg := vc.SandboxConfig{
		ID:           c.sandboxID,
		Hostname:     c.spec.Hostname,
		Hypervisor:   hc,
		SharedPidNS:  shared,
		NetNS:        netnsPath(c.spec),
		NAT:          nat,
		NetworkModel: cfg.NetworkModel,
		Annotations:  map[string]string{annNamespace: s.ns, annBundle: c.bundle},
		StateRoot:    cfg.StateRoot,
		Cgroup:       cfg.vmCgroup(c.spec),
		Policy:       policy,
	}
	if cfg.Factory != "" {
		if err := s.useFactory(cfg.Factory, &scfg); err != nil {
			return vc.SandboxConfig{}, err
		}
	}
	return scfg, nil
}

// useFactory makes scfg's VM start from the template in dir when there is
// one and the VM fits it; a damaged or stale template is an error.
func (s *Service) useFactory(dir string, scfg *vc.SandboxConfig) error {
	err := factory.Use(scfg, dir)
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err):
		s.log.Warn("factory configured without a template: booting", "sandbox", scfg.ID, "factory", dir)
		return nil
	case errors.Is(err, factory.ErrTemplateMismatch):
		s.log.Info("sandbox does not fit the factory's template: booting", "sandbox", scfg.ID, "why", err)
		return nil
	}
	return fmt.Errorf("config factory: %w", err)
}
