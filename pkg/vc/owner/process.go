package owner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

// ErrVMEnded is the error of a wait that failed because the VM ended:
// the process ended with it, its exit status unknown.
var ErrVMEnded = errors.New("the VM ended")

// vmEndWait is how long a failed wait waits for the VM's end to be
// noticed before it is taken for a failure of its own.
const vmEndWait = 2 * time.Second

// Process is one process of a container in the guest, its init or an
// exec'd one, run as every front end runs it: its streams copied from the
// moment it exists in the guest (so none of its output is lost however
// soon it exits), its exit waited for, then its output drained, bounded
// by progress. The Owner runs its container's init with one; the
// containerd shim each of its tasks' processes (many containers and their
// exec'd processes in one VM); vc exec, vc cp and vc-runtime exec their
// exec'd process.
type Process struct {
	c      *vc.Container
	execID string
	stop   context.CancelFunc
	// copied counts output bytes, so that Drain tells a stream making
	// progress from one a stray process holds open.
	copied atomic.Int64
	// done is closed once the output is over (and onEnd has run); err
	// says why the copy ended if it failed.
	done chan struct{}
	err  error
}

// StartProcess begins copying the streams of process execID of c (the
// container's id for its init) to and from pio. onEnd, if set, runs once
// the output is over, with the copy's error: the front end closes its
// side of the output there (containerd reads its FIFOs to EOF). The copy
// ends with the output, or with Close.
func StartProcess(ctx context.Context, c *vc.Container, execID string, pio vc.IO, onEnd func(error)) *Process {
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &Process{c: c, execID: execID, stop: stop, done: make(chan struct{})}
	if pio.Stdout != nil {
		pio.Stdout = &countingWriter{w: pio.Stdout, n: &p.copied}
	}
	if pio.Stderr != nil {
		pio.Stderr = &countingWriter{w: pio.Stderr, n: &p.copied}
	}
	copied := c.IOStream(ctx, execID, pio)
	go func() {
		p.err = <-copied
		if onEnd != nil {
			onEnd(p.err)
		}
		close(p.done)
	}()
	return p
}

// CloseStdin closes the process's stdin in the guest: for a process
// given none, which reads EOF as from /dev/null.
func (p *Process) CloseStdin(ctx context.Context) error {
	return p.c.CloseStdin(ctx, p.execID)
}

// Wait waits for the process to exit in the guest and returns its exit
// status (for the init, recorded in the container's state). With gone
// (the VM's end) set, a wait that fails because the VM ended fails with
// ErrVMEnded.
func (p *Process) Wait(ctx context.Context, gone <-chan struct{}) (int32, error) {
	var code int32
	var err error
	if p.execID == p.c.ID() {
		code, err = p.c.Wait(ctx)
	} else {
		code, err = p.c.WaitProcess(ctx, p.execID)
	}
	if err == nil || gone == nil {
		return code, err
	}
	select {
	case <-gone:
		return code, fmt.Errorf("wait for process %s of container %s: %w (%w)", p.execID, p.c.ID(), ErrVMEnded, err)
	case <-time.After(vmEndWait):
		return code, err
	}
}

// Done is closed once the output has been copied to the end.
func (p *Process) Done() <-chan struct{} { return p.done }

// Drain waits until the output has been copied to the end (after the
// process's exit: the output's end comes after it), and tells whether it
// was. A stream that makes no progress for idle (held open by a stray
// process that outlived the one that exited, or a reader that went away)
// is given up on: the copy goes on until Close.
func (p *Process) Drain(idle time.Duration) bool {
	last := p.copied.Load()
	t := time.NewTicker(idle)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return true
		case <-t.C:
			n := p.copied.Load()
			if n == last {
				return false
			}
			last = n
		}
	}
}

// Err is why the copy ended, once Done: nil for the output's end.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Close stops the copy; a nil Process is fine.
func (p *Process) Close() {
	if p != nil {
		p.stop()
	}
}

// countingWriter counts what it writes.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
