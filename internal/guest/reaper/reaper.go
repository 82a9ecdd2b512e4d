// Package reaper collects every child process of the agent.
//
// The agent is PID 1 of the guest (and a child subreaper elsewhere), so
// orphaned container processes are reparented to it and must be reaped.
// A single loop calls wait4(-1) and hands each exit status to whoever
// watches that pid. Code that starts a child whose exit it wants must hold
// the reaper's lock from before the start until Watch has been called, so
// the loop cannot reap the child first; code that runs a command to
// completion with os/exec uses Run, which holds the lock throughout.
package reaper

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// Reaper reaps children and delivers their exit statuses.
type Reaper struct {
	mu      sync.Mutex
	watches map[int]chan int
	sigs    chan os.Signal
}

// New returns a reaper; call Start to begin reaping.
func New() *Reaper {
	return &Reaper{watches: map[int]chan int{}}
}

// Start makes the process a child subreaper and starts the reaping loop.
func (r *Reaper) Start() error {
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	r.sigs = make(chan os.Signal, 1)
	signal.Notify(r.sigs, unix.SIGCHLD)
	go func() {
		for range r.sigs {
			r.reap()
		}
	}()
	return nil
}

// Lock stops reaping until Unlock. Hold it while starting a process whose
// pid will be passed to Watch.
func (r *Reaper) Lock() { r.mu.Lock() }

// Unlock resumes reaping, and reaps whatever exited meanwhile.
func (r *Reaper) Unlock() {
	r.mu.Unlock()
	select {
	case r.sigs <- unix.SIGCHLD:
	default:
	}
}

// Watch returns a channel that receives the exit status of pid: its exit
// code, or 128+N when killed by signal N. The caller holds the lock.
func (r *Reaper) Watch(pid int) <-chan int {
	ch := make(chan int, 1)
	r.watches[pid] = ch
	return ch
}

// Watching tells whether pid is watched already. The caller holds the
// lock.
func (r *Reaper) Watching(pid int) bool {
	_, ok := r.watches[pid]
	return ok
}

// Run runs cmd to completion with reaping held off, so os/exec can wait
// for its own child.
func (r *Reaper) Run(cmd *exec.Cmd) error {
	r.Lock()
	defer r.Unlock()
	return cmd.Run()
}

// Output is Run that returns the command's standard output.
func (r *Reaper) Output(cmd *exec.Cmd) ([]byte, error) {
	r.Lock()
	defer r.Unlock()
	return cmd.Output()
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		ch, ok := r.watches[pid]
		if !ok {
			slog.Debug("reaped orphan", "pid", pid, "status", ExitStatus(ws))
			continue
		}
		delete(r.watches, pid)
		ch <- ExitStatus(ws)
	}
}

// ExitStatus turns a wait status into a shell-style exit status.
func ExitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
