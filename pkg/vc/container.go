package vc

import (
	"context"
	"fmt"
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
// starts with StartContainer. On error nothing is left behind.
func (s *Sandbox) CreateContainer(ctx context.Context, cfg ContainerConfig) (err error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	unlock, err := s.store.Lock(ctx, s.id)
	if err != nil {
		return err
	}
	defer unlock()
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
	if err := shareContainer(s.sharedDir(), cfg.ID, cfg.Rootfs, spec); err != nil {
		return err
	}
	cu := cleanup.Make(func() { unshareContainer(s.sharedDir(), cfg.ID) })
	defer cu.Clean()

	req := &pb.CreateContainerRequest{
		ContainerId:  cfg.ID,
		ExecId:       cfg.ID,
		OCI:          oci.ToProto(spec),
		SandboxPidns: s.status.Config.SharedPidNS && !cfg.PrivatePidNS,
	}
	if _, err := s.agent.CreateContainer(ctx, req); err != nil {
		return fmt.Errorf("container %s: %w", cfg.ID, err)
	}
	st := ContainerStatus{ID: cfg.ID, SandboxID: s.id, State: StateCreated, Created: time.Now().UTC(), Config: cfg}
	if err := s.store.Save(s.id, containerKey(cfg.ID), st); err != nil {
		s.agent.RemoveContainer(context.WithoutCancel(ctx), &pb.RemoveContainerRequest{ContainerId: cfg.ID})
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

// StartContainer starts a created container's process.
func (s *Sandbox) StartContainer(ctx context.Context, cid string) error {
	return s.updateContainer(ctx, cid, func(c *ContainerStatus) error {
		if c.State != StateCreated {
			return fmt.Errorf("container %s is %s, not created: %w", cid, c.State, errdefs.ErrFailedPrecondition)
		}
		if _, err := s.agent.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: cid}); err != nil {
			return fmt.Errorf("container %s: %w", cid, err)
		}
		c.State = StateRunning
		return nil
	})
}

// updateContainer runs fn on a container's state under the sandbox lock
// and saves it.
func (s *Sandbox) updateContainer(ctx context.Context, cid string, fn func(*ContainerStatus) error) error {
	unlock, err := s.store.Lock(ctx, s.id)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := s.container(cid)
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return err
	}
	return s.store.Save(s.id, containerKey(cid), c)
}

func (s *Sandbox) container(cid string) (*ContainerStatus, error) {
	var c ContainerStatus
	if err := s.store.Load(s.id, containerKey(cid), &c); err != nil {
		return nil, fmt.Errorf("container %q in sandbox %s: %w", cid, s.id, errdefs.ErrNotFound)
	}
	return &c, nil
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

// StatusContainer reports a container's state.
func (s *Sandbox) StatusContainer(ctx context.Context, cid string) (ContainerStatus, error) {
	c, err := s.container(cid)
	if err != nil {
		return ContainerStatus{}, err
	}
	return *c, nil
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

// WaitContainer waits for the container's process to exit, records its
// exit code and returns it.
func (s *Sandbox) WaitContainer(ctx context.Context, cid string) (int32, error) {
	code, err := s.WaitProcess(ctx, cid, cid)
	if err != nil {
		return code, err
	}
	err = s.updateContainer(context.WithoutCancel(ctx), cid, func(c *ContainerStatus) error {
		c.State = StateStopped
		c.ExitCode = code
		c.Exited = time.Now().UTC()
		return nil
	})
	return code, err
}

// KillContainer signals the container's process, or all its processes.
func (s *Sandbox) KillContainer(ctx context.Context, cid string, sig uint32, all bool) error {
	if _, err := s.container(cid); err != nil {
		return err
	}
	exec := cid
	if all {
		exec = ""
	}
	return s.SignalProcess(ctx, cid, exec, sig)
}

// StopContainer kills the container's processes (SIGTERM, then SIGKILL
// after timeout) and records it stopped.
func (s *Sandbox) StopContainer(ctx context.Context, cid string, timeout time.Duration) error {
	c, err := s.container(cid)
	if err != nil {
		return err
	}
	if c.State == StateStopped || c.State == StateCreated {
		return s.updateContainer(ctx, cid, func(c *ContainerStatus) error { c.State = StateStopped; return nil })
	}
	done := make(chan int32, 1)
	go func() {
		code, _ := s.WaitProcess(context.WithoutCancel(ctx), cid, cid)
		done <- code
	}()
	s.SignalProcess(ctx, cid, "", 15)
	var code int32
	select {
	case code = <-done:
	case <-time.After(timeout):
		s.SignalProcess(ctx, cid, "", 9)
		select {
		case code = <-done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("container %s did not die after SIGKILL: %w", cid, context.DeadlineExceeded)
		}
	}
	return s.updateContainer(ctx, cid, func(c *ContainerStatus) error {
		c.State, c.ExitCode, c.Exited = StateStopped, code, time.Now().UTC()
		return nil
	})
}

// DeleteContainer removes a stopped (or never started) container from
// the guest and the host.
func (s *Sandbox) DeleteContainer(ctx context.Context, cid string) error {
	unlock, err := s.store.Lock(ctx, s.id)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := s.container(cid)
	if err != nil {
		return err
	}
	if c.State == StateRunning || c.State == StatePaused {
		return fmt.Errorf("container %s is %s; stop it first: %w", cid, c.State, errdefs.ErrFailedPrecondition)
	}
	if s.agent != nil && s.status.State != StateStopped {
		if _, err := s.agent.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: cid, Timeout: 10}); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", cid, err)
		}
	}
	if err := unshareContainer(s.sharedDir(), cid); err != nil {
		return err
	}
	return s.store.Delete(s.id, containerKey(cid))
}

// PauseContainer freezes a container's processes.
func (s *Sandbox) PauseContainer(ctx context.Context, cid string) error {
	return s.updateContainer(ctx, cid, func(c *ContainerStatus) error {
		if _, err := s.agent.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: cid}); err != nil {
			return fmt.Errorf("container %s: %w", cid, err)
		}
		c.State = StatePaused
		return nil
	})
}

// ResumeContainer thaws a paused container.
func (s *Sandbox) ResumeContainer(ctx context.Context, cid string) error {
	return s.updateContainer(ctx, cid, func(c *ContainerStatus) error {
		if _, err := s.agent.ResumeContainer(ctx, &pb.ResumeContainerRequest{ContainerId: cid}); err != nil {
			return fmt.Errorf("container %s: %w", cid, err)
		}
		c.State = StateRunning
		return nil
	})
}

// StatsContainer returns the container's cgroup and network statistics.
func (s *Sandbox) StatsContainer(ctx context.Context, cid string) (*pb.StatsContainerResponse, error) {
	if _, err := s.container(cid); err != nil {
		return nil, err
	}
	r, err := s.agent.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: cid})
	return r, err
}

// StatsSandbox returns the statistics of every running container.
func (s *Sandbox) StatsSandbox(ctx context.Context) (map[string]*pb.StatsContainerResponse, error) {
	cs, err := s.loadContainers()
	if err != nil {
		return nil, err
	}
	out := map[string]*pb.StatsContainerResponse{}
	for _, c := range cs {
		if c.State != StateRunning {
			continue
		}
		r, err := s.StatsContainer(ctx, c.ID)
		if err != nil {
			return nil, err
		}
		out[c.ID] = r
	}
	return out, nil
}

// UpdateContainer changes a container's cgroup resources.
func (s *Sandbox) UpdateContainer(ctx context.Context, cid string, r *specs.LinuxResources) error {
	if _, err := s.container(cid); err != nil {
		return err
	}
	_, err := s.agent.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: cid, Resources: oci.ResourcesToProto(r)})
	return err
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

// AddDevice is not implemented yet.
func (s *Sandbox) AddDevice(ctx context.Context) error {
	return fmt.Errorf("AddDevice: %w", errdefs.ErrNotImplemented)
}
