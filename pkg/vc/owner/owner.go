package owner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/vc"
)

// The statuses of a container (State.Status), as runc names them.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusPaused  = "paused"
	StatusStopped = "stopped"
)

// The errors of a request the container's status does not allow (runc's
// messages).
var (
	ErrNotRunning = errors.New("container not running")
	ErrNotPaused  = errors.New("container not paused")
	ErrStopped    = errors.New("cannot start a container that has stopped")
	ErrStarted    = errors.New("cannot start an already running container")
)

// Timeouts of the teardown: the VM's stop after the container exited (or
// a failed boot's), and how long the container's output may make no
// progress after its exit before it is given up on (Process.Drain).
const (
	StopTimeout      = 10 * time.Second
	AbandonTimeout   = 5 * time.Second
	OutputEndTimeout = 5 * time.Second
)

// BootConfig is a container in a VM of its own.
type BootConfig struct {
	Sandbox   vc.SandboxConfig
	Container vc.ContainerConfig
	// Prepare, if set, runs once the VM is up and before the container is
	// created: what the container needs of the sandbox's directory (its
	// root filesystem's layer, /etc files), c to be completed.
	Prepare func(ctx context.Context, s *vc.Sandbox, c *vc.ContainerConfig) error
	// Abandon, if set, runs when the boot fails after the VM came up,
	// once the VM is stopped and before its state is removed; false
	// keeps the state (what the front end could not move back).
	Abandon func(s *vc.Sandbox) bool
}

// ContainerError is a failure of the container itself (its config, its
// create or its start), not of its VM: the front end may map it to an
// exit code (docker's 125, 126, 127).
type ContainerError struct{ Err error }

func (e *ContainerError) Error() string { return e.Err.Error() }
func (e *ContainerError) Unwrap() error { return e.Err }

// Boot validates the container, boots its VM, prepares and creates the
// container in it. On error nothing it made is left (see Abandon).
func Boot(ctx context.Context, cfg BootConfig) (*vc.Sandbox, error) {
	// Bad input fails before a VM boots.
	if err := cfg.Container.Validate(); err != nil {
		return nil, &ContainerError{err}
	}
	s, err := vc.CreateSandbox(ctx, cfg.Sandbox)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			abandon(ctx, s, cfg.Abandon)
		}
	}()
	ccfg := cfg.Container
	if cfg.Prepare != nil {
		if err := cfg.Prepare(ctx, s, &ccfg); err != nil {
			return nil, err
		}
	}
	if err := s.CreateContainer(ctx, ccfg); err != nil {
		return nil, &ContainerError{err}
	}
	ok = true
	return s, nil
}

// abandon undoes a boot: the VM stops, its state goes unless the front
// end's Abandon keeps it.
func abandon(ctx context.Context, s *vc.Sandbox, fn func(*vc.Sandbox) bool) {
	ctx = context.WithoutCancel(ctx)
	s.Stop(ctx, AbandonTimeout)
	if fn != nil && !fn(s) {
		return
	}
	s.Delete(ctx)
}

// Ops are what an owner does to its container: the container itself in
// the VM the owner keeps (*vc.Container), or through the owner of the VM
// it joined (vc-runtime's pods).
type Ops interface {
	Start(ctx context.Context) error
	Kill(ctx context.Context, sig uint32, all bool) error
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Config is a container's whole life for a front end.
type Config struct {
	BootConfig
	// IO, called once the container exists, gives its streams.
	IO func(c *vc.Container) (vc.IO, error)
	// Control is the control socket's path, relative to the sandbox's
	// directory unless absolute; empty: none.
	Control string
	// Attach, if set, serves attach requests on the control socket; the
	// front end writes its streams into the container's output.
	Attach *Attach
	// Handle answers the requests the owner does not know (an op of the
	// front end's, or another container's); nil: they fail.
	Handle Handler
	// Ops, if set, replace the container's own start, kill, pause and
	// resume.
	Ops Ops
	// Gone, if set, tells the VM ended (default: the sandbox's Exited).
	Gone <-chan struct{}
	// StartedElsewhere: the container may be started by the library, not
	// by the owner (vc start): Wait waits for it from the first.
	StartedElsewhere bool
	// Signals: the signals this process gets are the container's (a
	// created container's kill: it is done).
	Signals bool
	// BeforeStart and AfterStart run around the container's start (the
	// terminal's size, the spec's poststart hooks).
	BeforeStart func()
	AfterStart  func(ctx context.Context)
	// OnState, if set, is told every change of the container's status,
	// with the owner's lock held (vc-runtime saves its state file).
	OnState func(State)
	Log     *slog.Logger
}

// Owner keeps a container and its VM.
type Owner struct {
	cfg  Config
	id   string
	log  *slog.Logger
	s    *vc.Sandbox
	c    *vc.Container
	ops  Ops
	proc *Process
	ctl  *Server

	mu      sync.Mutex
	status  string
	started chan struct{}
	// killed receives the signal that killed the container before it
	// started.
	killed chan int
	code   int
}

// Create boots the VM, creates the container with its streams connected
// and serves the control socket. The container is created, not started.
// On error nothing it made is left.
func Create(ctx context.Context, cfg Config) (*Owner, error) {
	s, err := Boot(ctx, cfg.BootConfig)
	if err != nil {
		return nil, err
	}
	o, err := New(ctx, cfg, s.Container(cfg.Container.ID))
	if err != nil {
		abandon(ctx, s, cfg.Abandon)
		return nil, err
	}
	return o, nil
}

// New owns container c, created already (in a VM of the front end's):
// its streams connected, the control socket served. On error what New
// made is undone; c is the caller's.
func New(ctx context.Context, cfg Config, c *vc.Container) (o *Owner, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	o = &Owner{cfg: cfg, id: c.ID(), log: cfg.Log, s: c.Sandbox(), c: c, ops: cfg.Ops, status: StatusCreated,
		started: make(chan struct{}), killed: make(chan int, 1)}
	if o.ops == nil {
		o.ops = c
	}
	defer func() {
		if err != nil {
			o.Close()
		}
	}()
	var pio vc.IO
	if cfg.IO != nil {
		if pio, err = cfg.IO(c); err != nil {
			return nil, err
		}
	}
	o.proc = StartProcess(ctx, c, o.id, pio, nil)
	if cfg.Control != "" {
		path := cfg.Control
		if !filepath.IsAbs(path) {
			path = filepath.Join(o.s.Dir(), path)
		}
		// Requests wait until the container is created (OnState).
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.ctl, err = Listen(path, o.handle, cfg.Attach); err != nil {
			return nil, err
		}
	} else {
		o.mu.Lock()
		defer o.mu.Unlock()
	}
	o.setStatus(StatusCreated)
	return o, nil
}

// setStatus records a new status; o.mu is held.
func (o *Owner) setStatus(s string) {
	o.status = s
	if o.cfg.OnState != nil {
		o.cfg.OnState(State{ID: o.id, Status: s})
	}
}

// Close ends the container's streams, attachments and control socket.
func (o *Owner) Close() {
	o.proc.Close()
	o.cfg.Attach.Close()
	o.ctl.Close()
}

// Abandon undoes Create, for a container that failed to start: its
// streams, attachments and control socket end, its VM stops and its
// state goes (see BootConfig.Abandon).
func (o *Owner) Abandon(ctx context.Context) {
	o.Close()
	abandon(ctx, o.s, o.cfg.Abandon)
}

// Sandbox is the container's VM.
func (o *Owner) Sandbox() *vc.Sandbox { return o.s }

// Container is the container.
func (o *Owner) Container() *vc.Container { return o.c }

// Start starts the container's command.
func (o *Owner) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sync(ctx)
	switch o.status {
	case StatusCreated:
	case StatusStopped:
		return ErrStopped
	default:
		return ErrStarted
	}
	if o.cfg.BeforeStart != nil {
		o.cfg.BeforeStart()
	}
	if err := o.ops.Start(ctx); err != nil {
		return &ContainerError{err}
	}
	o.setStatus(StatusRunning)
	close(o.started)
	if o.cfg.AfterStart != nil {
		o.cfg.AfterStart(ctx)
	}
	return nil
}

// sync notices a container started by the library, not by Start (vc
// start); o.mu is held.
func (o *Owner) sync(ctx context.Context) {
	if !o.cfg.StartedElsewhere || o.status != StatusCreated {
		return
	}
	if st, err := o.c.Status(ctx); err == nil && st.State != vc.StateCreated {
		o.setStatus(StatusRunning)
		close(o.started)
	}
}

// Kill sends sig to the container's process (all of them with all). A
// container killed before it started is done, with 128+sig.
func (o *Owner) Kill(ctx context.Context, sig int, all bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sync(ctx)
	switch o.status {
	case StatusCreated:
		// Nothing runs yet: the container is done.
		o.setStatus(StatusStopped)
		o.killed <- sig
		return nil
	case StatusRunning, StatusPaused:
		return o.ops.Kill(ctx, uint32(sig), all)
	}
	return ErrNotRunning
}

// Pause freezes the container's processes.
func (o *Owner) Pause(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.status != StatusRunning {
		return ErrNotRunning
	}
	if err := o.ops.Pause(ctx); err != nil {
		return err
	}
	o.setStatus(StatusPaused)
	return nil
}

// Resume thaws them.
func (o *Owner) Resume(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.status != StatusPaused {
		return ErrNotPaused
	}
	if err := o.ops.Resume(ctx); err != nil {
		return err
	}
	o.setStatus(StatusRunning)
	return nil
}

func (o *Owner) handle(ctx context.Context, req Request) (*State, error) {
	if req.Container != "" && req.Container != o.id {
		return o.other(ctx, req)
	}
	switch req.Op {
	case OpStart:
		return nil, o.Start(ctx)
	case OpKill:
		return nil, o.Kill(ctx, req.Signal, req.All)
	case OpPause:
		return nil, o.Pause(ctx)
	case OpResume:
		return nil, o.Resume(ctx)
	case OpResize:
		return nil, o.c.ResizeTerminal(ctx, o.id, req.Height, req.Width)
	case OpState:
		o.mu.Lock()
		defer o.mu.Unlock()
		o.sync(ctx)
		return &State{ID: o.id, Status: o.status, ExitStatus: o.code}, nil
	}
	return o.other(ctx, req)
}

func (o *Owner) other(ctx context.Context, req Request) (*State, error) {
	if o.cfg.Handle == nil {
		return nil, fmt.Errorf("unknown request %q", req.Op)
	}
	return o.cfg.Handle(ctx, req)
}

// Wait waits for the container to be started and to exit (or to be
// killed before it started, or its VM to end) and for its output to end,
// and returns its exit status: 128+signal for a container killed before
// it started or whose VM ended under it. The error is the library's when
// it could not wait.
func (o *Owner) Wait(ctx context.Context) (int, error) {
	ctx = context.WithoutCancel(ctx)
	var sigs chan os.Signal
	if o.cfg.Signals {
		sigs = make(chan os.Signal, 8)
		signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
		defer signal.Stop(sigs)
	}
	gone := o.cfg.Gone
	if gone == nil {
		gone = o.s.Exited()
	}
	type exit struct {
		code int
		err  error
	}
	done := make(chan exit, 1)
	wait := func() {
		c, err := o.proc.Wait(ctx, gone)
		if err != nil {
			o.log.Error("wait", "container", o.id, "err", err)
		}
		if errors.Is(err, ErrVMEnded) {
			// The container ended with its VM.
			c, err = 128+int32(unix.SIGKILL), nil
		}
		done <- exit{int(c), err}
	}
	started := o.started
	if o.cfg.StartedElsewhere {
		go wait()
		started = nil
	}
	ran := o.cfg.StartedElsewhere
	var e exit
wait:
	for {
		select {
		case <-started:
			started, ran = nil, true
			go wait()
		case e = <-done:
			break wait
		case sig := <-o.killed:
			e, ran = exit{code: 128 + sig}, false
			break wait
		case <-gone:
			// A VM stopped once the container exited: that exit first.
			select {
			case e = <-done:
			case <-time.After(time.Second):
				o.log.Error("the VM ended before the container", "container", o.id, "reason", o.s.Status().StopReason)
				e = exit{code: 128 + int(unix.SIGKILL)}
			}
			break wait
		case sig := <-sigs:
			// Signals to the owner are the container's.
			o.Kill(ctx, int(sig.(unix.Signal)), false)
		}
	}
	// The output's end comes after the exit; do not wait for it forever.
	// A container killed before start wrote nothing: its streams end
	// only when stopped, and waiting for them would make every delete of
	// a created container take the whole wait.
	if ran && !o.proc.Drain(OutputEndTimeout) {
		o.log.Warn("output still open after the exit; given up", "container", o.id, "idle", OutputEndTimeout)
	}
	o.proc.Close()
	o.mu.Lock()
	o.code = e.code
	o.status = StatusStopped
	if o.cfg.OnState != nil {
		o.cfg.OnState(State{ID: o.id, Status: StatusStopped, ExitStatus: e.code, Exited: time.Now().UTC()})
	}
	o.mu.Unlock()
	return e.code, e.err
}

// Shutdown ends the container's streams, attachments and control
// socket, and stops the VM; with remove, the VM's state goes too.
func (o *Owner) Shutdown(ctx context.Context, remove bool) error {
	o.Close()
	return Teardown(ctx, o.s, StopTimeout, remove, o.log)
}

// Teardown ends a VM a front end keeps: it stops it (the guest given
// grace to power off, then killed) and, with remove, removes its state.
// A failed stop is logged (Stop kills what does not stop); the error is
// the removal's, and a sandbox removed already is none.
func Teardown(ctx context.Context, s *vc.Sandbox, grace time.Duration, remove bool, log *slog.Logger) error {
	ctx = context.WithoutCancel(ctx)
	log = log.With("sandbox", s.ID())
	if err := s.Stop(ctx, grace); err != nil {
		log.Warn("stop the VM", "err", err)
	}
	if !remove {
		return nil
	}
	if err := s.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
		log.Warn("remove the VM's state", "err", err)
		return err
	}
	return nil
}
