package vc

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/cleanup"
	"github.com/virtcontainers/vc/pkg/oci"
)

func (s *Sandbox) running() error {
	if s.agent == nil || s.status.State == StateStopped {
		return fmt.Errorf("sandbox %s: %w", s.id, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// CreateContainer creates a container in the sandbox: its rootfs and bind
// volumes are shared into the guest and the agent prepares it; its process
// starts with Container(id).Start. On error nothing is left behind.
func (s *Sandbox) CreateContainer(ctx context.Context, cfg ContainerConfig) (err error) {
	ctx, endSpan := s.traceOpCollect(ctx, "container.create", cfg.ID)
	defer func() { endSpan(err) }()
	if err := cfg.Validate(); err != nil {
		return err
	}
	return s.locked(ctx, "create container "+cfg.ID, []State{StateRunning}, func() error { return s.createContainer(ctx, cfg) })
}

func (s *Sandbox) createContainer(ctx context.Context, cfg ContainerConfig) error {
	if err := s.running(); err != nil {
		return err
	}
	var existing ContainerStatus
	if err := s.store.Load(s.id, containerKey(cfg.ID), &existing); err == nil {
		return fmt.Errorf("container %s: %w", cfg.ID, errdefs.ErrAlreadyExists)
	}
	// The spec is rewritten for the guest; the caller's copy stays as is.
	spec, err := guestSpec(cfg.ID, cfg.Spec, cfg.PodInfra)
	if err != nil {
		return err
	}
	// Kubelet volumes rewritten in place become copies in the guest
	// (watchvol.go).
	cu := cleanup.Make(s.watchVolumes(ctx, cfg.ID, spec))
	defer cu.Clean()
	if err := shareContainer(s.sharedDir(), cfg.ID, cfg.Rootfs, spec); err != nil {
		return err
	}
	cu.Add(func() { unshareContainer(s.sharedDir(), cfg.ID) })
	// Unix sockets bind-mounted from the host are relayed (sockproxy.go).
	stopProxies, err := s.proxySockets(ctx, cfg.ID, spec)
	if err != nil {
		return fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	cu.Add(stopProxies)

	// Block devices of the spec are hotplugged as disks (device.go).
	devs, disks, err := s.plugDevices(ctx, cfg.ID, spec)
	if err != nil {
		return err
	}
	cu.Add(func() { s.unplugDevices(context.WithoutCancel(ctx), cfg.ID, disks) })
	req := &pb.CreateContainerRequest{
		ContainerId:  cfg.ID,
		ExecId:       cfg.ID,
		Devices:      devs,
		OCI:          oci.ToProto(spec),
		SandboxPidns: s.status.Config.SharedPidNS && !cfg.PrivatePidNS,
	}
	// The container's limits come out of what the VM holds for the
	// workload, and the VM grows if they do not fit (resize.go).
	cpus, mib, err := specLimits(cfg.Spec)
	if err != nil {
		return fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	s.mu.Lock()
	reserved := s.status.Reserved
	s.status.Reserved.CPUs -= min(cpus, reserved.CPUs)
	s.status.Reserved.MemoryMiB -= min(mib, reserved.MemoryMiB)
	s.mu.Unlock()
	cu.Add(func() {
		s.mu.Lock()
		s.status.Reserved = reserved
		s.mu.Unlock()
	})
	st := ContainerStatus{ID: cfg.ID, SandboxID: s.id, State: StateCreated, Created: time.Now().UTC(), Config: cfg, Disks: disks}
	create := func() error {
		if _, err := s.agent.CreateContainer(ctx, req); err != nil {
			return fmt.Errorf("container %s: %w", cfg.ID, err)
		}
		if err := s.store.Save(s.id, containerKey(cfg.ID), st); err != nil {
			s.agent.RemoveContainer(context.WithoutCancel(ctx), &pb.RemoveContainerRequest{ContainerId: cfg.ID})
			return err
		}
		if err := s.save(); err != nil {
			s.agent.RemoveContainer(context.WithoutCancel(ctx), &pb.RemoveContainerRequest{ContainerId: cfg.ID})
			s.store.Delete(s.id, containerKey(cfg.ID))
			return err
		}
		return nil
	}
	if err := s.resize(ctx, &st, true, create, func() {}); err != nil {
		return err
	}
	cu.Release()
	return nil
}

// guestSpec copies spec and makes it fit the guest: host-only parts (hooks,
// namespace paths of the host, host cgroup paths) are dropped. An IPC or
// UTS namespace named by path, or any of a pod's infrastructure container
// (podInfra), becomes the sandbox's shared one.
func guestSpec(cid string, in *specs.Spec, podInfra bool) (*specs.Spec, error) {
	b := *in
	spec := &b
	if in.Process != nil {
		p := *in.Process
		spec.Process = &p
	}
	spec.Mounts = append([]specs.Mount(nil), in.Mounts...)
	spec.Hooks = nil
	if in.Linux != nil {
		l := *in.Linux
		l.Namespaces = nil
		for _, ns := range in.Linux.Namespaces {
			// Host namespace paths mean nothing in the guest; the network
			// is the VM's.
			if ns.Type == specs.NetworkNamespace {
				continue
			}
			shared := ns.Type == specs.IPCNamespace || ns.Type == specs.UTSNamespace
			if shared && (ns.Path != "" || podInfra) {
				ns.Path = pb.SandboxNamespace
			} else {
				ns.Path = ""
			}
			l.Namespaces = append(l.Namespaces, ns)
		}
		l.CgroupsPath = "/vc/" + cid
		spec.Linux = &l
	}
	if spec.Process != nil && spec.Process.Cwd == "" {
		spec.Process.Cwd = "/"
	}
	return spec, nil
}

func (s *Sandbox) loadContainers() ([]*ContainerStatus, error) {
	names, err := s.store.Names(s.id, "container-")
	if err != nil {
		return nil, err
	}
	var out []*ContainerStatus
	for _, n := range names {
		var c ContainerStatus
		if s.store.Load(s.id, n, &c) == nil {
			out = append(out, &c)
		}
	}
	return out, nil
}

// ListContainers reports every container of the sandbox.
func (s *Sandbox) ListContainers(ctx context.Context) ([]ContainerStatus, error) {
	cs, err := s.loadContainers()
	var out []ContainerStatus
	for _, c := range cs {
		out = append(out, *c)
	}
	return out, err
}

// StatsSandbox returns the statistics of every running container.
func (s *Sandbox) StatsSandbox(ctx context.Context) (map[string]*ContainerStats, error) {
	cs, err := s.loadContainers()
	if err != nil {
		return nil, err
	}
	out := map[string]*ContainerStats{}
	for _, c := range cs {
		if c.State != StateRunning {
			continue
		}
		r, err := s.Container(c.ID).Stats(ctx)
		if err != nil {
			return nil, err
		}
		out[c.ID] = r
	}
	return out, nil
}

// Container is a handle on one container of a sandbox, for the
// operations on it and its processes. It holds nothing of its own: each
// call reads the container's recorded state, so a handle may be made for
// a container that does not exist (yet), and its calls then fail with
// ErrNotFound.
type Container struct {
	s  *Sandbox
	id string
}

// Container returns a handle on container id of the sandbox.
func (s *Sandbox) Container(id string) *Container { return &Container{s: s, id: id} }

// ID is the container's id.
func (c *Container) ID() string { return c.id }

// Sandbox is the sandbox the container is in.
func (c *Container) Sandbox() *Sandbox { return c.s }

// load reads the container's recorded state and checks that it is one of
// states (any, when none is given).
func (c *Container) load(op string, states ...State) (*ContainerStatus, error) {
	var st ContainerStatus
	if err := c.s.store.Load(c.s.id, containerKey(c.id), &st); err != nil {
		return nil, fmt.Errorf("%s: container %q in sandbox %s: %w", op, c.id, c.s.id, errdefs.ErrNotFound)
	}
	if !st.State.in(states...) {
		return nil, fmt.Errorf("%s: container %s is %s, not %s: %w", op, c.id, st.State, joinStates(states), errdefs.ErrFailedPrecondition)
	}
	return &st, nil
}

// live is load for an operation that needs the agent: the sandbox must be
// running too (a fetched stopped sandbox has no agent connection).
func (c *Container) live(op string, states ...State) (*ContainerStatus, error) {
	st, err := c.load(op, states...)
	if err != nil {
		return nil, err
	}
	if err := c.s.running(); err != nil {
		return nil, fmt.Errorf("%s: container %s: %w", op, c.id, err)
	}
	return st, nil
}

// update runs fn under the sandbox's lock on the container's recorded
// state, once it is one of states (any, when none is given), and saves
// what fn left. The state fn moves to must be in the transition table.
func (c *Container) update(ctx context.Context, op string, states []State, fn func(*ContainerStatus) error) error {
	return c.s.locked(ctx, op, nil, func() error {
		st, err := c.load(op, states...)
		if err != nil {
			return err
		}
		from := st.State
		if err := fn(st); err != nil {
			return err
		}
		if !canMove(from, st.State) {
			return fmt.Errorf("%s: container %s: %s cannot become %s: %w", op, c.id, from, st.State, errdefs.ErrFailedPrecondition)
		}
		return c.s.store.Save(c.s.id, containerKey(c.id), st)
	})
}

func joinStates(states []State) string {
	var b strings.Builder
	for i, s := range states {
		if i > 0 {
			b.WriteString(" or ")
		}
		b.WriteString(string(s))
	}
	return b.String()
}

// Status reports the container's recorded state.
func (c *Container) Status(ctx context.Context) (ContainerStatus, error) {
	st, err := c.load("status")
	if err != nil {
		return ContainerStatus{}, err
	}
	return *st, nil
}

// Start starts a created container's process.
func (c *Container) Start(ctx context.Context) (err error) {
	ctx, endSpan := c.s.traceOpCollect(ctx, "container.start", c.id)
	defer func() { endSpan(err) }()
	return c.update(ctx, "start", []State{StateCreated}, func(st *ContainerStatus) error {
		if err := c.s.running(); err != nil {
			return err
		}
		if _, err := c.s.agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: c.id}); err != nil {
			return fmt.Errorf("container %s: %w", c.id, err)
		}
		st.State = StateRunning
		return nil
	})
}

// stopped records the container stopped with exit code code, unless it
// already was.
func (c *Container) stopped(ctx context.Context, op string, code int32) error {
	return c.update(context.WithoutCancel(ctx), op, nil, func(st *ContainerStatus) error {
		if st.State != StateStopped {
			st.State, st.ExitCode, st.Exited = StateStopped, code, time.Now().UTC()
		}
		return nil
	})
}

// Wait waits for the container's process to exit, records its exit code
// and returns it.
func (c *Container) Wait(ctx context.Context) (int32, error) {
	code, err := c.WaitProcess(ctx, c.id)
	if err != nil {
		return code, err
	}
	if err := c.stopped(ctx, "wait", code); err != nil && !errdefs.IsNotFound(err) {
		return code, err
	}
	// A container (or sandbox) removed meanwhile has nothing to record:
	// its exit code is still the answer.
	return code, nil
}

// Kill signals the container's process, or all its processes.
func (c *Container) Kill(ctx context.Context, sig uint32, all bool) error {
	exec := c.id
	if all {
		exec = ""
	}
	return c.SignalProcess(ctx, exec, sig)
}

// Stop signals the container's init with SIGTERM, as docker does (its
// other processes are its to stop), then, after timeout, kills all the
// container's processes with SIGKILL, and records it stopped.
func (c *Container) Stop(ctx context.Context, timeout time.Duration) (err error) {
	ctx, endSpan := c.s.traceOpCollect(ctx, "container.stop", c.id)
	defer func() { endSpan(err) }()
	st, err := c.load("stop")
	if err != nil {
		return err
	}
	if st.State == StateStopped || st.State == StateCreated || c.s.running() != nil {
		return c.stopped(ctx, "stop", st.ExitCode)
	}
	done := make(chan int32, 1)
	go func() {
		code, _ := c.WaitProcess(context.WithoutCancel(ctx), c.id)
		done <- code
	}()
	c.SignalProcess(ctx, c.id, 15)
	var code int32
	select {
	case code = <-done:
	case <-time.After(timeout):
		c.SignalProcess(ctx, "", 9)
		select {
		case code = <-done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("container %s did not die after SIGKILL: %w", c.id, context.DeadlineExceeded)
		}
	}
	return c.stopped(ctx, "stop", code)
}

// Delete removes a stopped (or never started) container from the guest
// and the host.
func (c *Container) Delete(ctx context.Context) (err error) {
	ctx, endSpan := c.s.traceOpCollect(ctx, "container.delete", c.id)
	defer func() { endSpan(err) }()
	s := c.s
	return s.locked(ctx, "delete", nil, func() error {
		st, err := c.load("delete", StateCreated, StateStopped)
		if err != nil {
			return err
		}
		if s.running() == nil {
			if _, err := s.agent.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: c.id, Timeout: 10}); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("container %s: %w", c.id, err)
			}
		}
		s.stopSockProxies(c.id)
		s.unwatchVolumes(ctx, c.id)
		if err := s.unplugDevices(ctx, c.id, st.Disks); err != nil {
			return err
		}
		if err := unshareContainer(s.sharedDir(), c.id); err != nil {
			return err
		}
		if err := os.RemoveAll(s.etcFilesDir(c.id)); err != nil {
			return fmt.Errorf("container %s: /etc files: %w", c.id, err)
		}
		return s.store.Delete(s.id, containerKey(c.id))
	})
}

// Pause freezes a running container's processes.
func (c *Container) Pause(ctx context.Context) error {
	return c.update(ctx, "pause", []State{StateRunning}, func(st *ContainerStatus) error {
		if err := c.s.running(); err != nil {
			return err
		}
		if _, err := c.s.agent.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: c.id}); err != nil {
			return fmt.Errorf("container %s: %w", c.id, err)
		}
		st.State = StatePaused
		return nil
	})
}

// Resume thaws a paused container.
func (c *Container) Resume(ctx context.Context) error {
	return c.update(ctx, "resume", []State{StatePaused}, func(st *ContainerStatus) error {
		if err := c.s.running(); err != nil {
			return err
		}
		if _, err := c.s.agent.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: c.id}); err != nil {
			return fmt.Errorf("container %s: %w", c.id, err)
		}
		st.State = StateRunning
		return nil
	})
}

// Stats returns the container's cgroup and network statistics.
func (c *Container) Stats(ctx context.Context) (*ContainerStats, error) {
	if _, err := c.live("stats"); err != nil {
		return nil, err
	}
	r, err := c.s.agent.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: c.id})
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.id, err)
	}
	return statsFromProto(r), nil
}

// Update changes the container's cgroup resources, and resizes the VM to
// fit its containers' limits (resize.go): vCPUs and memory are hotplugged
// before a limit grows and unplugged once it has shrunk. A size the VM
// cannot take fails naming the limit, with errdefs.ErrResourceExhausted
// (above hypervisor.max_memory_mib) or ErrFailedPrecondition (the guest
// could not give back memory or a vCPU), and leaves the VM and the
// cgroup as they were.
func (c *Container) Update(ctx context.Context, r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("update container %s: no resources: %w", c.id, errdefs.ErrInvalidArgument)
	}
	s := c.s
	return s.locked(ctx, "update", nil, func() error {
		st, err := c.live("update", StateCreated, StateRunning, StatePaused)
		if err != nil {
			return err
		}
		spec := *st.Config.Spec
		var old *specs.LinuxResources
		if spec.Linux != nil {
			l := *spec.Linux
			old = l.Resources
			spec.Linux = &l
		} else {
			spec.Linux = &specs.Linux{}
		}
		if spec.Linux.Resources, err = mergeResources(old, r); err != nil {
			return fmt.Errorf("update container %s: %w", c.id, err)
		}
		next := *st
		next.Config.Spec = &spec
		update := func(r *specs.LinuxResources) error {
			_, err := s.agent.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: c.id, Resources: oci.ResourcesToProto(r)})
			if err != nil {
				return fmt.Errorf("update container %s: %w", c.id, err)
			}
			return nil
		}
		apply := func() error { return update(r) }
		undo := func() {
			if err := update(restoreResources(old, r)); err != nil {
				s.log.Error("undo of a failed update: the container keeps its new limits", "container", c.id, "err", err)
			}
		}
		if err := s.resize(ctx, &next, false, apply, undo); err != nil {
			return err
		}
		return s.store.Save(s.id, containerKey(c.id), next)
	})
}

// GetOOMEvent blocks until a container of the sandbox is OOM-killed and
// returns its id.
func (s *Sandbox) GetOOMEvent(ctx context.Context) (string, error) {
	if err := s.running(); err != nil {
		return "", err
	}
	r, err := s.agent.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
	if err != nil {
		return "", err
	}
	return r.ContainerId, nil
}
