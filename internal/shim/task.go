package shim

import (
	"context"
	"fmt"
	"os"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	ptypes "github.com/containerd/containerd/v2/pkg/protobuf/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

var empty = &ptypes.Empty{}

// edge converts an error to a ttRPC status, the only place errdefs
// sentinels become codes.
func edge(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func oomEvent(cid string) *eventstypes.TaskOOM {
	return &eventstypes.TaskOOM{ContainerID: cid}
}

// lookup finds a task's process.
func (s *Service) lookup(id, execID string) (*container, *process, error) {
	c, err := s.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

// running returns the sandbox, or an error if the shim has none left.
func (s *Service) running() (*vc.Sandbox, error) {
	sb := s.getSandbox()
	if sb == nil {
		return nil, fmt.Errorf("the shim's sandbox is gone: %w", errdefs.ErrFailedPrecondition)
	}
	return sb, nil
}

// Start starts a created process: a container's init or an exec'd one.
func (s *Service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	pid, err := s.start(ctx, r)
	if err != nil {
		return nil, edge(err)
	}
	return &taskAPI.StartResponse{Pid: pid}, nil
}

func (s *Service) start(ctx context.Context, r *taskAPI.StartRequest) (uint32, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return 0, err
	}
	sb, err := s.running()
	if err != nil {
		return 0, err
	}
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	if st := p.getState(); st != stateCreated {
		return 0, fmt.Errorf("process %s of container %s: already started: %w", p.agentID(), c.id, errdefs.ErrFailedPrecondition)
	}
	if p.isInit() {
		if err := sb.Container(c.id).Start(ctx); err != nil {
			return 0, err
		}
	} else {
		if c.init.getState() != stateRunning {
			return 0, fmt.Errorf("container %s: its init process is not running: %w", c.id, errdefs.ErrFailedPrecondition)
		}
		spec := *p.spec
		if err := sb.Container(c.id).Exec(ctx, p.execID, &spec); err != nil {
			return 0, err
		}
		// The agent keeps the output until it is read.
		p.run = vcowner.StartProcess(ctx, sb.Container(c.id), p.execID, p.io.vcIO(), p.io.outputEnded)
	}
	p.mu.Lock()
	p.state = stateRunning
	p.mu.Unlock()
	if p.stdio.Stdin == "" && !p.stdio.Terminal {
		// No stdin: the process reads EOF, as from /dev/null.
		if err := p.run.CloseStdin(ctx); err != nil {
			p.log.Debug("close stdin", "err", err)
		}
	}
	pid := s.pid()
	if p.isInit() {
		s.send(&eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
	} else {
		s.send(&eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: p.execID, Pid: pid})
		go s.watch(sb, p)
	}
	p.log.Info("process started")
	return pid, nil
}

// Delete removes a stopped (or never started) process; for a container's
// init, the container: from the guest, its rootfs mounts on the host, and
// for the container that booted the sandbox, the VM and its state.
func (s *Service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	resp, err := s.delete(ctx, r)
	return resp, edge(err)
}

func (s *Service) delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	st := p.getState()
	if st == stateRunning && !p.hasExited() {
		return nil, fmt.Errorf("process %s of container %s is running; kill it first: %w", p.agentID(), c.id, errdefs.ErrFailedPrecondition)
	}
	p.mu.Lock()
	p.deleted = true
	p.mu.Unlock()
	if !p.isInit() {
		c.mu.Lock()
		delete(c.execs, p.execID)
		c.mu.Unlock()
		// Its output is closed already (once copied); stdin goes now.
		p.run.Close()
		p.io.closeAll()
		status, at := p.exitInfo()
		return &taskAPI.DeleteResponse{Pid: s.pid(), ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
	}
	if execs := c.runningExecs(); len(execs) > 0 {
		return nil, fmt.Errorf("container %s still has %d exec'd processes running: %w", c.id, len(execs), errdefs.ErrFailedPrecondition)
	}
	if sb := s.getSandbox(); sb != nil {
		if err := sb.Container(c.id).Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	if st == stateCreated {
		// Removing it from the guest ended it; its exit is not reported.
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.log.Warn("the removed process's wait did not end")
		}
	}
	p.run.Close()
	p.io.closeAll()
	if c.mounted {
		if err := unmountRootfs(c.rootfs); err != nil {
			c.log.Warn("unmount rootfs", "err", err)
		}
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	s.mu.Unlock()
	if c.typ.BootsVM() {
		s.destroySandbox(context.WithoutCancel(ctx))
	}
	status, at := p.exitInfo()
	pid := s.pid()
	s.send(&eventstypes.TaskDelete{ContainerID: c.id, Pid: pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)})
	c.log.Info("container deleted", "status", status)
	return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Exec adds a process to a running container; Start starts it.
func (s *Service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	return empty, edge(s.exec(ctx, r))
}

func (s *Service) exec(ctx context.Context, r *taskAPI.ExecProcessRequest) error {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return err
	}
	if r.ExecID == "" || r.ExecID == c.id {
		return fmt.Errorf("exec id %q: must be set and differ from the container's id: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	if c.init.getState() != stateRunning || c.init.hasExited() {
		return fmt.Errorf("container %s is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if r.Spec == nil {
		return fmt.Errorf("exec %s: spec: missing: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	v, err := typeurl.UnmarshalAny(r.Spec)
	if err != nil {
		return fmt.Errorf("exec %s: spec: %w: %w", r.ExecID, err, errdefs.ErrInvalidArgument)
	}
	spec, ok := v.(*specs.Process)
	if !ok {
		return fmt.Errorf("exec %s: spec is a %T, not a process: %w", r.ExecID, v, errdefs.ErrInvalidArgument)
	}
	if len(spec.Args) == 0 {
		return fmt.Errorf("exec %s: spec.args: empty: %w", r.ExecID, errdefs.ErrInvalidArgument)
	}
	spec.Terminal = r.Terminal
	c.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		c.mu.Unlock()
		return fmt.Errorf("exec %s in container %s: %w", r.ExecID, c.id, errdefs.ErrAlreadyExists)
	}
	p := newProcess(c, r.ExecID, stdio{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}, spec)
	c.execs[r.ExecID] = p
	c.mu.Unlock()
	if p.io, err = openIO(ctx, p.log, s.ns, c.id, p.stdio); err != nil {
		c.mu.Lock()
		delete(c.execs, r.ExecID)
		c.mu.Unlock()
		return fmt.Errorf("exec %s: %w", r.ExecID, err)
	}
	s.send(&eventstypes.TaskExecAdded{ContainerID: c.id, ExecID: r.ExecID})
	return nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, edge(err)
	}
	sb, err := s.running()
	if err != nil {
		return nil, edge(err)
	}
	if p.getState() != stateRunning {
		return nil, edge(fmt.Errorf("process %s of container %s is not running: %w", p.agentID(), c.id, errdefs.ErrFailedPrecondition))
	}
	return empty, edge(sb.Container(c.id).ResizeTerminal(ctx, p.agentID(), r.Height, r.Width))
}

// State reports a process's state.
func (s *Service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, edge(err)
	}
	status, at := p.exitInfo()
	resp := &taskAPI.StateResponse{
		ID:         p.agentID(),
		Bundle:     c.bundle,
		Pid:        s.pid(),
		Status:     p.taskStatus(),
		Stdin:      p.stdio.Stdin,
		Stdout:     p.stdio.Stdout,
		Stderr:     p.stdio.Stderr,
		Terminal:   p.stdio.Terminal,
		ExitStatus: status,
		ExecID:     r.ExecID,
	}
	if !at.IsZero() {
		resp.ExitedAt = protobuf.ToTimestamp(at)
	}
	return resp, nil
}

// Pids lists a container's processes. The guest's pids mean nothing on
// the host (and the agent protocol has no process list): each process is
// reported with the VM's pid, exec'd ones with their exec id.
func (s *Service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, edge(err)
	}
	pid := s.pid()
	var out []*task.ProcessInfo
	if c.init.getState() == stateRunning {
		out = append(out, &task.ProcessInfo{Pid: pid})
	}
	for _, p := range c.runningExecs() {
		info, err := typeurl.MarshalAnyToProto(&options.ProcessDetails{ExecID: p.execID})
		if err != nil {
			return nil, edge(err)
		}
		out = append(out, &task.ProcessInfo{Pid: pid, Info: info})
	}
	return &taskAPI.PidsResponse{Processes: out}, nil
}

// Pause freezes a container's processes.
func (s *Service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	return empty, edge(s.setPaused(ctx, r.ID, true))
}

// Resume thaws a paused container.
func (s *Service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	return empty, edge(s.setPaused(ctx, r.ID, false))
}

func (s *Service) setPaused(ctx context.Context, id string, pause bool) error {
	c, err := s.getContainer(id)
	if err != nil {
		return err
	}
	sb, err := s.running()
	if err != nil {
		return err
	}
	if c.init.getState() != stateRunning || c.init.hasExited() {
		return fmt.Errorf("container %s is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	if pause {
		err = sb.Container(c.id).Pause(ctx)
	} else {
		err = sb.Container(c.id).Resume(ctx)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.paused = pause
	c.mu.Unlock()
	if pause {
		s.send(&eventstypes.TaskPaused{ContainerID: c.id})
	} else {
		s.send(&eventstypes.TaskResumed{ContainerID: c.id})
	}
	c.log.Info("container paused", "paused", pause)
	return nil
}

// Kill signals a process, or with All every process of the container.
func (s *Service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	return empty, edge(s.kill(ctx, r))
}

func (s *Service) kill(ctx context.Context, r *taskAPI.KillRequest) error {
	c, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return err
	}
	if p.getState() == stateStopped || p.hasExited() {
		return fmt.Errorf("process %s of container %s already finished: %w", p.agentID(), c.id, errdefs.ErrNotFound)
	}
	if !p.isInit() && p.getState() == stateCreated {
		return fmt.Errorf("exec %s of container %s: not started: %w", p.execID, c.id, errdefs.ErrFailedPrecondition)
	}
	sb, err := s.running()
	if err != nil {
		return err
	}
	p.log.Info("signal", "signal", r.Signal, "all", r.All)
	if r.All && p.isInit() {
		return sb.Container(c.id).Kill(ctx, r.Signal, true)
	}
	return sb.Container(c.id).SignalProcess(ctx, p.agentID(), r.Signal)
}

// CloseIO closes a process's stdin once containerd has written it all.
func (s *Service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, edge(err)
	}
	if r.Stdin && p.io != nil {
		p.io.closeStdin()
	}
	return empty, nil
}

// Update changes a container's resources.
func (s *Service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, edge(err)
	}
	sb, err := s.running()
	if err != nil {
		return nil, edge(err)
	}
	if r.Resources == nil {
		return nil, edge(fmt.Errorf("update %s: resources: missing: %w", c.id, errdefs.ErrInvalidArgument))
	}
	v, err := typeurl.UnmarshalAny(r.Resources)
	if err != nil {
		return nil, edge(fmt.Errorf("update %s: resources: %w: %w", c.id, err, errdefs.ErrInvalidArgument))
	}
	res, ok := v.(*specs.LinuxResources)
	if !ok {
		return nil, edge(fmt.Errorf("update %s: resources are a %T, not Linux resources: %w", c.id, v, errdefs.ErrInvalidArgument))
	}
	return empty, edge(sb.Container(c.id).Update(ctx, res))
}

// Wait waits for a process to exit.
func (s *Service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.lookup(r.ID, r.ExecID)
	if err != nil {
		return nil, edge(err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, edge(ctx.Err())
	}
	status, at := p.exitInfo()
	return &taskAPI.WaitResponse{ExitStatus: status, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Stats returns a container's cgroup metrics in the guest, as cgroup v1
// metrics (io.containerd.cgroups.v1.Metrics).
func (s *Service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	c, err := s.getContainer(r.ID)
	if err != nil {
		return nil, edge(err)
	}
	sb, err := s.running()
	if err != nil {
		return nil, edge(err)
	}
	st, err := sb.Container(c.id).Stats(ctx)
	if err != nil {
		return nil, edge(err)
	}
	a, err := typeurl.MarshalAnyToProto(toMetrics(st))
	if err != nil {
		return nil, edge(err)
	}
	return &taskAPI.StatsResponse{Stats: a}, nil
}

// Connect tells containerd the shim's pid and the task's.
func (s *Service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	return &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.pid()}, nil
}

// Shutdown ends the shim once it has no containers left.
func (s *Service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return empty, nil
	}
	s.log.Info("shutting down")
	s.sd.Shutdown()
	return empty, nil
}

// Checkpoint is not supported: a VM's containers cannot be checkpointed
// with CRIU from the host.
func (s *Service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	return nil, edge(fmt.Errorf("Checkpoint of %s: not supported by the vc runtime: %w", r.ID, errdefs.ErrNotImplemented))
}
