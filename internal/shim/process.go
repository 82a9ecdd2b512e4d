package shim

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/pkg/protobuf"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

// drainIdle is how long the output of an exited process may make no
// progress before TaskExit goes out without waiting for the rest.
var drainIdle = 3 * time.Second

// execExitWait bounds how long a container's init exit waits for the
// exits of its exec'd processes to be reported first.
var execExitWait = 30 * time.Second

type procState int

const (
	stateCreated procState = iota
	stateRunning
	stateStopped
)

// container is a task: an OCI container in the sandbox, with its init
// process and the processes exec'd in it.
type container struct {
	id        string
	bundle    string
	typ       annotations.ContainerType
	sandboxID string
	spec      *specs.Spec
	rootfs    string // host directory shared into the guest
	mounted   bool   // rootfs holds the mounts containerd passed, ours to unmount
	log       *slog.Logger
	init      *process

	mu     sync.Mutex
	execs  map[string]*process
	paused bool

	// oomMu orders TaskOOM before the exit: held while deciding and
	// queueing a TaskOOM (oom.go).
	oomMu sync.Mutex
	// oomEvents counts the agent's OOM events for the container,
	// oomReported the OOM kills TaskOOM reported.
	oomEvents, oomReported uint64
}

// process is a container's init (execID "") or an exec'd process.
type process struct {
	c      *container
	execID string
	spec   *specs.Process // exec'd processes only
	stdio  stdio
	io     *processIO
	// run copies the streams and waits for the exit: set when the
	// process exists in the guest (Create for an init, Start for an
	// exec).
	run *vcowner.Process
	log *slog.Logger

	// lifecycle is held while the process starts and while its exit is
	// reported, so TaskExit never goes out before TaskStart or
	// TaskExecStarted.
	lifecycle sync.Mutex

	mu       sync.Mutex
	state    procState
	status   uint32
	exitedAt time.Time
	deleted  bool
	// exited is closed once the exit is known and reported.
	exited chan struct{}
}

func newProcess(c *container, execID string, s stdio, spec *specs.Process) *process {
	log := c.log
	if execID != "" {
		log = log.With("exec", execID)
	}
	return &process{c: c, execID: execID, stdio: s, spec: spec, log: log, exited: make(chan struct{})}
}

// agentID is the process's exec id in the guest: the container's own id
// for its init.
func (p *process) agentID() string {
	if p.execID == "" {
		return p.c.id
	}
	return p.execID
}

func (p *process) isInit() bool { return p.execID == "" }

func (p *process) getState() procState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// taskStatus is the process's status as containerd names it.
func (p *process) taskStatus() task.Status {
	switch p.getState() {
	case stateCreated:
		return task.Status_CREATED
	case stateStopped:
		return task.Status_STOPPED
	}
	if p.isInit() {
		p.c.mu.Lock()
		paused := p.c.paused
		p.c.mu.Unlock()
		if paused {
			return task.Status_PAUSED
		}
	}
	return task.Status_RUNNING
}

func (p *process) exitInfo() (uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.exitedAt
}

// hasExited tells whether the exit has been reported.
func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// runningExecs are the container's exec'd processes that started and
// whose exit has not been reported.
func (c *container) runningExecs() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*process
	for _, p := range c.execs {
		if p.getState() == stateRunning && !p.hasExited() {
			out = append(out, p)
		}
	}
	return out
}

func (c *container) process(execID string) (*process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec %q of container %s: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// watch waits for the process to exit in the guest, waits for its output
// to be copied, records the exit and reports it. It runs from the moment
// the process exists in the guest (Create for an init, Start for an exec),
// so a process killed before it started is reported too. When the VM
// dies, the wait fails and the process is reported exited with 255.
func (s *Service) watch(sb *vc.Sandbox, p *process) {
	// Any failed wait (the VM ended, the process was removed) is an
	// unknown exit: 255, as runc's shim reports it. The shim needs not
	// tell a VM's end (the owner's 137, docker's) from the rest, so it
	// waits for no VM's end (gone nil).
	code, err := p.run.Wait(context.Background(), nil)
	if err != nil {
		p.log.Warn("wait failed; the process is reported exited", "err", err, "status", code)
		if code == 0 {
			code = 255
		}
	}
	// containerd expects a process's output complete before its exit.
	if !p.run.Drain(drainIdle) {
		p.log.Warn("output still open after exit; reporting the exit anyway", "idle", drainIdle)
	}
	if p.isInit() {
		// The init's exit is the container's last: its exec'd processes
		// (killed with it when its pid namespace ends) are reported first.
		deadline := time.After(execExitWait)
	wait:
		for _, e := range p.c.runningExecs() {
			select {
			case <-e.exited:
			case <-deadline:
				p.log.Warn("exec'd processes still not reported exited; reporting the init's exit", "waited", execExitWait)
				break wait
			}
		}
	}
	if err == nil && (p.isInit() || code == 128+9) {
		// An OOM kill (of the process or in its container) goes out
		// before the exit: SIGKILL'd, or the container's last exit.
		s.oomBeforeExit(sb, p.c)
	}
	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	p.mu.Lock()
	p.state = stateStopped
	p.status = uint32(code)
	p.exitedAt = time.Now()
	deleted := p.deleted
	at := p.exitedAt
	p.mu.Unlock()
	p.log.Info("process exited", "status", code)
	if !deleted {
		s.send(&eventstypes.TaskExit{
			ContainerID: p.c.id,
			ID:          p.agentID(),
			Pid:         s.pid(),
			ExitStatus:  uint32(code),
			ExitedAt:    protobuf.ToTimestamp(at),
		})
	}
	close(p.exited)
}
