package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"
)

// Process is a container's init or exec'd process.
type Process struct {
	c      *Container
	execID string
	init   bool
	pid    int
	io     *stdio

	mu     sync.Mutex
	pidfd  int // -1 when none or after exit
	exited bool
	done   chan struct{}
	status int
	waited bool
	// started is when Start released the init (zero before); signals
	// are held for it a while after (signal.go). preExec is what it
	// executed then, libcontainer's init, if known: until it executes
	// something else the user's program has not begun.
	started      time.Time
	preExec      fileID
	preExecKnown bool
}

func newProc(c *Container, execID string, init bool) *Process {
	return &Process{c: c, execID: execID, init: init, pidfd: -1, done: make(chan struct{})}
}

// start starts lp in the container as p. The reaper is held off from
// before libcontainer forks until the final pid is watched, so the exit
// status can only come from the reaper (libcontainer waits for its
// intermediate children itself meanwhile).
func (p *Process) start(lp *libcontainer.Process, terminal bool) (err error) {
	var consoleParent, consoleChild *os.File
	if terminal {
		consoleParent, consoleChild, err = utils.NewSockPair("console")
		if err != nil {
			return err
		}
		defer consoleParent.Close()
		lp.ConsoleSocket = consoleChild
	} else {
		io, in, out, errw, err := newPipes()
		if err != nil {
			return err
		}
		p.io = io
		lp.Stdin, lp.Stdout, lp.Stderr = in, out, errw
	}

	var exit <-chan int
	r := p.c.m.reaper
	func() {
		r.Lock()
		defer r.Unlock()
		t := time.Now()
		defer func() { p.c.log.Debug("libcontainer start", "exec_id", p.execID, "took", time.Since(t)) }()
		if err = p.c.lc.Start(lp); err != nil {
			err = commandError(err)
			return
		}
		p.pid, err = lp.Pid()
		if err != nil {
			return
		}
		if fd, perr := unix.PidfdOpen(p.pid, 0); perr == nil {
			p.pidfd = fd
		}
		exit = r.Watch(p.pid)
	}()
	if terminal {
		consoleChild.Close()
	} else {
		p.io.closeChildEnds()
	}
	if err != nil {
		if p.io != nil {
			p.io.close()
		}
		return err
	}
	if terminal {
		var master *os.File
		master, err = recvConsole(consoleParent)
		if err == nil {
			p.io, err = newTerminal(master)
		}
		if err != nil {
			p.io = &stdio{stdout: newClosedStream(), stderr: newClosedStream()}
			p.kill()
			go p.waitExit(exit)
			return fmt.Errorf("receive terminal: %w", err)
		}
	}
	go p.waitExit(exit)
	return nil
}

// recvConsole receives the terminal master that libcontainer's init sends
// over the console socket. The process has sent it before Start returns,
// or has died and closed the socket; the timeout is a safety net.
func recvConsole(sock *os.File) (*os.File, error) {
	tv := unix.Timeval{Sec: 10}
	if err := unix.SetsockoptTimeval(int(sock.Fd()), unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	return utils.RecvFile(sock)
}

func (p *Process) waitExit(exit <-chan int) {
	status := <-exit
	// An OOM kill is queued before the exit can be reported: whoever
	// learns of the exit and then asks for OOM events finds it.
	p.c.noteOOM(false)
	p.mu.Lock()
	p.status = status
	p.exited = true
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	close(p.done)
	p.mu.Unlock()
	p.c.log.Info("process exited", "exec_id", p.execID, "pid", p.pid, "status", status)
	if p.init {
		p.c.initExited()
	} else {
		p.c.maybeForget(p)
	}
}

// signal sends sig to the process. It fails with NotFound once the
// process has exited.
func (p *Process) signal(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return fmt.Errorf("process has exited: %w", errdefs.ErrNotFound)
	}
	var err error
	if p.pidfd >= 0 {
		err = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	} else {
		err = unix.Kill(p.pid, sig)
	}
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("process has exited: %w", errdefs.ErrNotFound)
	}
	return err
}

func (p *Process) kill() {
	_ = p.signal(unix.SIGKILL)
}

func (p *Process) isExited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its status.
func (p *Process) wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	p.mu.Lock()
	p.waited = true
	st := p.status
	p.mu.Unlock()
	return st, nil
}

// forgettable: an exec'd process whose status was collected and whose
// output was read to the end can be dropped.
func (p *Process) forgettable() bool {
	p.mu.Lock()
	ok := p.exited && p.waited
	p.mu.Unlock()
	return ok && p.io.stdout.isDrained() && p.io.stderr.isDrained()
}

// waitAll waits until every process in ps has exited, or the deadline
// (zero: none) passes.
func waitAll(ctx context.Context, ps []*Process, deadline time.Time) error {
	var timer <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timer = t.C
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-timer:
			return context.DeadlineExceeded
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
