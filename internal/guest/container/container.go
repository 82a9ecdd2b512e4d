package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/spans"
	"github.com/virtcontainers/vc/pkg/oci"
)

// Container is a container of the sandbox.
type Container struct {
	id         string
	initExecID string
	m          *Manager
	lc         *libcontainer.Container
	spec       *specs.Spec
	prep       *prepared
	mounts     []string // storage mount points, unmounted on removal
	usernsRoot string   // bindUsernsRoot's mount point, unmounted on removal
	log        *slog.Logger

	// lifecycle is held shared while a process is being started and
	// exclusively to mark the container as being removed, so no exec can
	// slip in after removal has killed everything.
	lifecycle sync.RWMutex
	mu        sync.Mutex
	init      *Process
	execs     map[string]*Process
	starting  map[string]bool // exec ids being started
	removing  bool
	removed   bool
	// oom follows the cgroup's OOM kill count (oom.go).
	oom oomCounter
	// helper forks the container's execs (exechelper.go).
	helper helperState
}

// lcErr maps libcontainer's state errors to errdefs sentinels.
func lcErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, libcontainer.ErrNotRunning):
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, libcontainer.ErrNotPaused), errors.Is(err, libcontainer.ErrPaused), errors.Is(err, libcontainer.ErrRunning):
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	case errors.Is(err, libcontainer.ErrExist):
		return fmt.Errorf("%w: %w", err, errdefs.ErrAlreadyExists)
	}
	return err
}

// Create creates a container and its init process, stopped before it
// executes the user's program until Start.
func (m *Manager) Create(ctx context.Context, req *pb.CreateContainerRequest) (retErr error) {
	id := req.GetContainerId()
	if err := m.reserve(id); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			m.unreserve(id)
		}
	}()
	if req.GetOCI() == nil {
		return invalid("OCI", "missing")
	}
	spec := oci.FromProto(req.GetOCI())
	if err := m.resolveSharedNS(spec); err != nil {
		return err
	}
	pidns := ""
	if req.GetSandboxPidns() {
		var err error
		if pidns, err = m.sandboxPidns(); err != nil {
			return err
		}
	}
	prep, err := prepareSpec(id, spec, pidns, m.cgroup2)
	if err != nil {
		return err
	}
	log := m.log.With("container_id", id)

	// Storages first: the rootfs is usually one of them.
	var mounts []string
	defer func() {
		if retErr != nil {
			m.unmountAll(log, mounts)
		}
	}()
	for i, s := range req.GetStorages() {
		if s == nil {
			continue
		}
		mp, err := m.cfg.Mount(ctx, s)
		if err != nil {
			return fmt.Errorf("storages[%d]: %w", i, err)
		}
		mounts = append(mounts, mp)
	}
	if err := resolveDevices(ctx, spec, req.GetDevices()); err != nil {
		return err
	}
	if err := resolveUser(spec.Root.Path, req.GetStringUser(), &spec.Process.User); err != nil {
		return err
	}
	usernsRoot, err := bindUsernsRoot(id, spec, m.cfg.UsernsRootDir)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			if err := unbindUsernsRoot(usernsRoot); err != nil {
				log.Warn("undo user namespace root", "err", err)
			}
		}
	}()
	if err := bindReadonlyNodes(spec); err != nil {
		return err
	}
	cfg, err := newConfig(id, prep, m.noPivot)
	if err != nil {
		return err
	}
	lp, err := newProcess("OCI.Process", spec.Process, true)
	if err != nil {
		return err
	}
	if err := applyNetSysctls(prep.netSysctls); err != nil {
		return err
	}
	_, sp := spans.Start(ctx, "libcontainer.Create")
	lc, err := libcontainer.Create(m.cfg.Root, id, cfg)
	sp.End(err)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return fmt.Errorf("container_id %q: %w", id, errdefs.ErrAlreadyExists)
		}
		return invalid("OCI", "%v", err)
	}
	c := &Container{
		id: id, initExecID: req.GetExecId(), m: m, lc: lc, spec: spec, prep: prep,
		log: log, execs: map[string]*Process{}, starting: map[string]bool{},
	}
	if c.initExecID == "" {
		c.initExecID = id
	}
	p := newProc(c, c.initExecID, true)
	t0 := time.Now()
	_, sp = spans.Start(ctx, "libcontainer.Start")
	err = p.start(lp, spec.Process.Terminal)
	sp.End(err)
	if err != nil {
		if derr := lc.Destroy(); derr != nil {
			log.Warn("destroy after failed start", "err", derr)
		}
		return fmt.Errorf("start container init: %w", err)
	}
	c.init = p
	c.mounts = mounts
	c.usernsRoot = usernsRoot
	c.watchOOM()
	m.register(c)
	log.Info("container created", "pid", p.pid, "rootfs", spec.Root.Path, "init_took", time.Since(t0))
	return nil
}

// Start lets the container's init execute the user's program.
func (m *Manager) Start(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	st, err := c.lc.Status()
	if err != nil {
		return err
	}
	if st != libcontainer.Created {
		return fmt.Errorf("container_id %q: container is %s, not created: %w", id, st, errdefs.ErrFailedPrecondition)
	}
	// libcontainer's init is what runs until the user's program: what
	// it executes tells when the program has taken over (signalInit
	// holds a signal until then).
	p := c.init
	before, exeErr := exeOf(p.pid)
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("container_id %q: start: %w", id, commandError(lcErr(err)))
	}
	// Exec returns once the init was released, before its execve. Start
	// does not wait for it: a front end resizes the terminal right after
	// Start (ctr, conmon), and the program should find its size.
	p.mu.Lock()
	p.started, p.preExec, p.preExecKnown = time.Now(), before, exeErr == nil
	p.mu.Unlock()
	c.log.Info("container started")
	return nil
}

// Exec starts another process in a container.
func (m *Manager) Exec(ctx context.Context, req *pb.ExecProcessRequest) (retErr error) {
	c, err := m.get(req.GetContainerId())
	if err != nil {
		return err
	}
	execID := req.GetExecId()
	if req.GetProcess() == nil {
		return invalid("process", "missing")
	}
	sp := oci.ProcessFromProto(req.GetProcess())
	if len(sp.Args) == 0 || sp.Args[0] == "" {
		return invalid("process.Args", "empty")
	}
	if err := resolveUser(c.spec.Root.Path, req.GetStringUser(), &sp.User); err != nil {
		return err
	}
	if sp.Rlimits == nil {
		// As runc exec does: a process that sets no limits gets the
		// container's (libcontainer alone would give it the agent's).
		sp.Rlimits = c.spec.Process.Rlimits
	}
	lp, err := newProcess("process", sp, false)
	if err != nil {
		return err
	}

	c.lifecycle.RLock()
	defer c.lifecycle.RUnlock()
	c.mu.Lock()
	switch {
	case c.removing:
		c.mu.Unlock()
		return fmt.Errorf("container_id %q: container is being removed: %w", c.id, errdefs.ErrFailedPrecondition)
	case execID == c.initExecID || c.execs[execID] != nil || c.starting[execID]:
		c.mu.Unlock()
		return fmt.Errorf("exec_id %q: %w", execID, errdefs.ErrAlreadyExists)
	}
	c.starting[execID] = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.starting, execID)
		c.mu.Unlock()
	}()

	// A process joining a frozen cgroup would freeze in libcontainer's
	// init while the reaper is held off.
	st, err := c.lc.Status()
	if err != nil {
		return err
	}
	switch st {
	case libcontainer.Paused:
		return fmt.Errorf("container_id %q: container is paused: %w", c.id, errdefs.ErrFailedPrecondition)
	case libcontainer.Stopped:
		return fmt.Errorf("container_id %q: container is not running: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	p, err := c.startExec(execID, sp, lp)
	if err != nil {
		return fmt.Errorf("exec_id %q: start: %w", execID, err)
	}
	c.mu.Lock()
	c.execs[execID] = p
	c.mu.Unlock()
	c.log.Info("process started", "exec_id", execID, "pid", p.pid)
	return nil
}

// process finds a container's process: its init for an empty exec id or
// the init's exec id.
func (m *Manager) process(id, execID string) (*Process, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	return c.process(execID)
}

func (c *Container) process(execID string) (*Process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if execID == "" || execID == c.initExecID {
		return c.init, nil
	}
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec_id %q: no such process in container %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// Signal sends sig to one process, or with an empty exec id to every
// process of the container.
func (m *Manager) Signal(ctx context.Context, id, execID string, sig unix.Signal) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if execID != "" {
		p, err := c.process(execID)
		if err != nil {
			return err
		}
		signal := p.signal
		if p.init {
			signal = c.signalInit
		}
		if err := signal(sig); err != nil {
			return fmt.Errorf("exec_id %q: %w", execID, err)
		}
		return nil
	}
	if err := c.signalAll(sig); err != nil {
		return fmt.Errorf("container_id %q: %w", id, err)
	}
	return nil
}

// signalAll signals every process in the container's cgroup.
func (c *Container) signalAll(sig unix.Signal) error {
	if sig == unix.SIGKILL {
		// libcontainer kills init (and with it its PID namespace), or
		// every process of the cgroup when the PID namespace is shared,
		// thawing a frozen cgroup so the signal is acted on.
		err := c.lc.Signal(sig)
		if errors.Is(err, libcontainer.ErrNotRunning) {
			// Nothing left, unless stray processes remain in the cgroup.
			pids, _ := c.lc.Processes()
			if len(pids) == 0 {
				return fmt.Errorf("container is not running: %w", errdefs.ErrNotFound)
			}
			for _, pid := range pids {
				_ = unix.Kill(pid, sig)
			}
			return nil
		}
		return err
	}
	pids, err := c.lc.Processes()
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("container is not running: %w", errdefs.ErrNotFound)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	return nil
}

// initExited runs when the container's init has exited: processes left
// behind (possible when the PID namespace is shared) are killed.
func (c *Container) initExited() {
	if c.prep.privatePidns {
		return
	}
	if pids, _ := c.lc.Processes(); len(pids) > 0 {
		c.log.Info("init exited, killing the container's remaining processes", "count", len(pids))
		if err := c.lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			c.log.Warn("kill remaining processes", "err", err)
		}
	}
}

// Wait waits for a process to exit and returns its status.
func (m *Manager) Wait(ctx context.Context, id, execID string) (int, error) {
	p, err := m.process(id, execID)
	if err != nil {
		return 0, err
	}
	st, err := p.wait(ctx)
	if err != nil {
		return 0, err
	}
	if !p.init {
		p.c.maybeForget(p)
	}
	return st, nil
}

// maybeForget drops an exec'd process once nothing more can be asked of
// it: it exited, its status was collected and its output read to EOF.
// Until then its exec id stays taken.
func (c *Container) maybeForget(p *Process) {
	if p.init || !p.forgettable() {
		return
	}
	c.mu.Lock()
	if c.execs[p.execID] == p {
		delete(c.execs, p.execID)
	}
	c.mu.Unlock()
	p.io.close()
	c.log.Debug("process forgotten", "exec_id", p.execID)
}

// Remove kills every process of the container, waits for them at most
// timeout (0: no limit), then frees the container's resources.
func (m *Manager) Remove(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	c.lifecycle.Lock()
	c.mu.Lock()
	if c.removing {
		c.mu.Unlock()
		c.lifecycle.Unlock()
		return fmt.Errorf("container_id %q: removal already in progress: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.removing = true
	c.mu.Unlock()
	c.lifecycle.Unlock()

	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := c.stop(ctx, deadline); err != nil {
		c.mu.Lock()
		c.removing = false
		c.mu.Unlock()
		return fmt.Errorf("container_id %q: %w", id, err)
	}
	return m.destroy(c)
}

// stop kills everything in the container and waits until it is all gone.
func (c *Container) stop(ctx context.Context, deadline time.Time) error {
	for {
		if err := c.signalAll(unix.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			c.log.Warn("kill container", "err", err)
		}
		c.mu.Lock()
		ps := []*Process{c.init}
		for _, p := range c.execs {
			ps = append(ps, p)
			p.kill()
		}
		c.mu.Unlock()
		err := waitAll(ctx, ps, deadline)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("processes still running after the timeout: %w", err)
			}
			return err
		}
		pids, err := c.lc.Processes()
		if err != nil || len(pids) == 0 {
			return nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("%d processes still in the container's cgroup after the timeout: %w", len(pids), context.DeadlineExceeded)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// destroy frees a stopped container's resources and forgets it.
func (m *Manager) destroy(c *Container) error {
	var errs []error
	if err := c.lc.Destroy(); err != nil {
		errs = append(errs, err)
	}
	c.mu.Lock()
	c.removed = true
	ps := []*Process{c.init}
	for _, p := range c.execs {
		ps = append(ps, p)
	}
	c.execs = map[string]*Process{}
	c.mu.Unlock()
	for _, p := range ps {
		p.io.close()
	}
	c.closeHelper()
	if err := unbindUsernsRoot(c.usernsRoot); err != nil {
		errs = append(errs, err)
	}
	if err := m.unmountAll(c.log, c.mounts); err != nil {
		errs = append(errs, err)
	}
	m.unregister(c)
	c.log.Info("container removed")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("container_id %q: %w", c.id, err)
	}
	return nil
}

// Pause freezes the container.
func (m *Manager) Pause(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	// Pausing a paused container does nothing, as libcontainer documents
	// (but does not do).
	if st, err := c.lc.Status(); err == nil && st == libcontainer.Paused {
		return nil
	}
	if err := c.lc.Pause(); err != nil {
		return fmt.Errorf("container_id %q: pause: %w", id, lcErr(err))
	}
	c.log.Info("container paused")
	return nil
}

// Resume thaws the container.
func (m *Manager) Resume(ctx context.Context, id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if err := c.lc.Resume(); err != nil {
		return fmt.Errorf("container_id %q: resume: %w", id, lcErr(err))
	}
	c.log.Info("container resumed")
	return nil
}

// Update changes the container's cgroup resources. Only what the request
// sets changes; device rules cannot be changed.
func (m *Manager) Update(ctx context.Context, id string, r *pb.LinuxResources) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if r == nil {
		return invalid("resources", "missing")
	}
	cfg := c.lc.Config()
	res, err := mergeResources(cfg.Cgroups.Resources, oci.ResourcesFromProto(r))
	if err != nil {
		return err
	}
	cg := *cfg.Cgroups
	cg.Resources = res
	cfg.Cgroups = &cg
	if err := c.lc.Set(cfg); err != nil {
		return fmt.Errorf("container_id %q: update: %w", id, lcErr(err))
	}
	c.log.Info("container resources updated")
	return nil
}
