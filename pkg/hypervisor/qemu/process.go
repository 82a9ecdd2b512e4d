package qemu

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// process is QEMU's process, a child of ours (started by Start) or not
// (found by Attach); either way Exited closes when it is gone.
type process struct {
	exited chan struct{}

	mu    sync.Mutex
	pid   int
	cmd   *exec.Cmd     // a child
	pidfd int           // not a child: watched through a pidfd; -1 otherwise
	desc  string        // how it ended
	cpu   time.Duration // user+system CPU time, once a child has exited
}

// newPendingProcess is a process not started yet: its exited channel can
// be handed out before Start.
func newPendingProcess() *process {
	return &process{exited: make(chan struct{}), pidfd: -1}
}

// adoptChild records a started QEMU child and reaps it when it exits.
func (v *qemuVM) adoptChild(cmd *exec.Cmd) *process {
	v.mu.Lock()
	if v.proc == nil {
		v.proc = newPendingProcess()
	}
	p := v.proc
	v.mu.Unlock()
	p.mu.Lock()
	p.pid, p.cmd = cmd.Process.Pid, cmd
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		desc := "exited with status 0"
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				desc = fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
			} else {
				desc = fmt.Sprintf("exited with status %d", ee.ExitCode())
			}
		} else if err != nil {
			desc = "lost: " + err.Error()
		}
		p.mu.Lock()
		p.desc = desc
		if cmd.ProcessState != nil {
			p.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		p.mu.Unlock()
		close(p.exited)
	}()
	return p
}

// watchPidfd follows a process that is not our child through its pidfd
// (pidfd_open), which it takes over. release ends the watch early.
func watchPidfd(p *process, pid, fd int) (release func(), err error) {
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	p.mu.Lock()
	p.pid, p.pidfd = pid, fd
	p.mu.Unlock()
	go func() {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		p.mu.Lock()
		p.pidfd = -1
		released := fds[1].Revents != 0 && fds[0].Revents == 0
		if !released {
			p.desc = "exited"
		}
		p.mu.Unlock()
		unix.Close(fd)
		unix.Close(stop)
		if !released {
			close(p.exited)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { unix.Write(stop, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	}, nil
}

func (p *process) getPid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *process) status() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.desc == "" {
		return "running"
	}
	return p.desc
}

// kill sends SIGKILL, safely against pid reuse (both ways use a pidfd).
func (p *process) kill() {
	if p.hasExited() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cmd != nil:
		_ = p.cmd.Process.Kill()
	case p.pidfd >= 0:
		_ = unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
	}
}

// wait waits up to d for the process to go and tells whether it did.
func (p *process) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}
