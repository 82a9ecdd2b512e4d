package owner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/vc"
)

// The statuses State reports.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// Timeouts of the teardown: the VM's stop after the container exited (or
// a failed boot's), and the wait for the container's output to end after
// its exit.
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

// Config is a container's whole life for a front end.
type Config struct {
	BootConfig
	// IO, called once the container is created, gives its streams.
	IO func(s *vc.Sandbox) (vc.IO, error)
	// Control is the control socket's path, relative to the sandbox's
	// directory unless absolute; empty: none.
	Control string
	// Attach, if set, serves attach requests on the control socket; the
	// front end writes its streams into the container's output.
	Attach *Attach
	// Handle answers the requests the owner does not know (an op of the
	// front end's, or another container's); nil: they fail.
	Handle Handler
	Log    *slog.Logger
}

// Owner keeps a container and its VM.
type Owner struct {
	cfg     Config
	id      string
	log     *slog.Logger
	s       *vc.Sandbox
	c       *vc.Container
	streams <-chan error
	stopIO  func()
	ctl     *Server

	mu     sync.Mutex
	status string
	// killed receives the signal that killed the container before it
	// started.
	killed chan int
	code   int
}

// Create boots the VM, creates the container with its streams connected
// and serves the control socket. The container is created, not started.
// On error nothing it made is left.
func Create(ctx context.Context, cfg Config) (o *Owner, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	id := cfg.Container.ID
	s, err := Boot(ctx, cfg.BootConfig)
	if err != nil {
		return nil, err
	}
	o = &Owner{cfg: cfg, id: id, log: cfg.Log, s: s, c: s.Container(id), status: StatusCreated,
		killed: make(chan int, 1), stopIO: func() {}}
	defer func() {
		if err != nil {
			o.Abandon(ctx)
			o = nil
		}
	}()
	var pio vc.IO
	if cfg.IO != nil {
		if pio, err = cfg.IO(s); err != nil {
			return o, err
		}
	}
	streamCtx, stopIO := context.WithCancel(context.WithoutCancel(ctx))
	o.streams, o.stopIO = o.c.IOStream(streamCtx, id, pio), stopIO
	if cfg.Control != "" {
		path := cfg.Control
		if !filepath.IsAbs(path) {
			path = filepath.Join(s.Dir(), path)
		}
		if o.ctl, err = Listen(path, o.handle, cfg.Attach); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Abandon undoes Create, for a container that failed to start: its
// streams, attachments and control socket end, its VM stops and its
// state goes (see BootConfig.Abandon).
func (o *Owner) Abandon(ctx context.Context) {
	o.stopIO()
	o.cfg.Attach.Close()
	o.ctl.Close()
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
	return o.start(ctx)
}

// start starts the container; o.mu is held.
func (o *Owner) start(ctx context.Context) error {
	switch o.status {
	case StatusCreated:
	case StatusStopped:
		return errors.New("cannot start a container that has stopped")
	default:
		return errors.New("cannot start an already running container")
	}
	if err := o.c.Start(ctx); err != nil {
		return &ContainerError{err}
	}
	o.status = StatusRunning
	return nil
}

// Kill sends sig to the container's process (all of them with all). A
// container killed before it started is done, with 128+sig.
func (o *Owner) Kill(ctx context.Context, sig int, all bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sync(ctx)
	switch o.status {
	case StatusCreated:
		o.status = StatusStopped
		o.killed <- sig
		return nil
	case StatusRunning:
		return o.c.Kill(ctx, uint32(sig), all)
	}
	return errors.New("container not running")
}

// sync notices a container started by the library, not by Start (vc
// start); o.mu is held.
func (o *Owner) sync(ctx context.Context) {
	if o.status != StatusCreated {
		return
	}
	if st, err := o.c.Status(ctx); err == nil && st.State != vc.StateCreated {
		o.status = StatusRunning
	}
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

// Wait waits for the container to exit (or to be killed before it
// started, or its VM to end) and for its output to end, and returns its
// exit status: 128+signal for a container killed before it started or
// whose VM ended under it. The error is the library's when it could not
// wait.
func (o *Owner) Wait(ctx context.Context) (int, error) {
	ctx = context.WithoutCancel(ctx)
	type exit struct {
		code int
		err  error
	}
	done := make(chan exit, 1)
	go func() {
		c, err := o.c.Wait(ctx)
		done <- exit{int(c), err}
	}()
	var e exit
	ran := true
	select {
	case e = <-done:
	case sig := <-o.killed:
		e, ran = exit{code: 128 + sig}, false
	case <-o.s.Exited():
		// A VM stopped once the container exited: that exit first.
		select {
		case e = <-done:
		case <-time.After(time.Second):
			o.log.Error("the VM ended before the container", "container", o.id, "reason", o.s.Status().StopReason)
			e = exit{code: 128 + int(unix.SIGKILL)}
		}
	}
	// The output's end comes after the exit; do not wait for it forever.
	// A container killed before start wrote nothing: its streams end
	// only when stopped.
	if ran {
		select {
		case <-o.streams:
		case <-time.After(OutputEndTimeout):
		}
	}
	o.mu.Lock()
	o.status, o.code = StatusStopped, e.code
	o.mu.Unlock()
	return e.code, e.err
}

// Shutdown ends the container's streams, attachments and control
// socket, and stops the VM; with remove, the VM's state goes too.
func (o *Owner) Shutdown(ctx context.Context, remove bool) error {
	ctx = context.WithoutCancel(ctx)
	o.stopIO()
	o.cfg.Attach.Close()
	o.ctl.Close()
	if err := o.s.Stop(ctx, StopTimeout); err != nil {
		o.log.Warn("stop the VM", "container", o.id, "err", err)
	}
	if !remove {
		return nil
	}
	return o.s.Delete(ctx)
}
