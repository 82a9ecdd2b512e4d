package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// sideReadyTimeout bounds how long a helper process may take to listen.
const sideReadyTimeout = 10 * time.Second

// sideProc is a helper process that serves QEMU on a unix socket: passt
// (a NAT NIC's network stack) or virtiofsd (a virtio-fs share). It
// starts before QEMU and ends on its own once QEMU has closed its
// socket; stop and wait make sure of it.
type sideProc struct {
	what   string // "nat nic nat0: passt", for errors
	cmd    *exec.Cmd
	sock   string
	log    string
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// start runs p.cmd (in cgroup, with prepare on its thread before the
// fork) and waits until p.sock listens, then makes the socket its
// owner's only. On error the process is gone.
func (p *sideProc) start(ctx context.Context, cgroup hypervisor.CgroupPlacer, dieWithParent bool, prepare func() error) (err error) {
	p.exited = make(chan struct{})
	release := make(chan struct{})
	if err := startCmdIn(p.cmd, cgroup, dieWithParent, release, prepare); err != nil {
		return fmt.Errorf("%s: start %s: %w", p.what, p.cmd.Path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
		close(release)
	}()
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, sideReadyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if listeningUnix(p.sock) {
			if err := os.Chmod(p.sock, 0o600); err != nil {
				return fmt.Errorf("%s: socket: %w", p.what, err)
			}
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v): %s: %w", p.what, p.err, logTail(p.log), errdefs.ErrFailedPrecondition)
		case <-ctx.Done():
			return fmt.Errorf("%s: socket %s did not listen: %w", p.what, p.sock, errors.Join(ctx.Err(), errdefs.ErrUnavailable))
		case <-tick.C:
		}
	}
}

// stop kills the process, reaps it and removes its socket. It is a
// no-op on a nil or exited one (but for the socket).
func (p *sideProc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(killTimeout):
		}
	}
	os.Remove(p.sock)
}

// wait gives the process up to d to end on its own (it does once QEMU
// closed its socket), then stops it.
func (p *sideProc) wait(d time.Duration) {
	if p == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	p.stop()
}

// logTail is the last lines of a helper's log, without passt's
// complaints about a missing syslog.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Failed to send ") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 5 {
		keep = keep[len(keep)-5:]
	}
	return strings.Join(keep, "; ")
}
