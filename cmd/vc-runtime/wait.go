package main

import (
	"context"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// run waits for the container to be started and to exit (or to be killed
// before it started, or its VM to die), tears the VM down (or leaves the
// VM it joined) and returns the exit status.
func (o *owner) run(ctx context.Context) int {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	code := -1
	done := make(chan int32, 1)
	started := o.started
	vmGone := o.sb.Exited()
	if o.host != "" {
		quit := make(chan struct{})
		defer close(quit)
		vmGone = o.hostGone(quit)
	}
wait:
	for {
		select {
		case <-started:
			started = nil
			go func() {
				c, err := o.c.Wait(context.WithoutCancel(ctx))
				if err != nil {
					o.log.Error("wait", "err", err)
					c = 255
					if o.host != "" {
						// The VM's owner went away: the VM with it.
						select {
						case <-vmGone:
							c = 128 + int32(unix.SIGKILL)
						case <-time.After(2 * time.Second):
						}
					}
				}
				done <- c
			}()
		case c := <-done:
			code = int(c)
			break wait
		case sig := <-o.killed:
			code = 128 + sig
			break wait
		case <-vmGone:
			o.log.Error("the VM ended before the container", "vm_container", o.st.vmOwner(), "reason", o.sb.Status().StopReason)
			code = 128 + int(unix.SIGKILL)
			break wait
		case sig := <-sigs:
			// Signals to the container's pid are the container's.
			o.mu.Lock()
			status := o.st.Status
			o.mu.Unlock()
			if status == statusCreated {
				o.handle(request{Op: "kill", Signal: int(sig.(unix.Signal))})
				continue
			}
			o.containerOp(ctx, request{Op: "kill", Signal: int(sig.(unix.Signal))})
		}
	}
	signal.Stop(sigs)
	// The output's end comes after the exit; do not wait for it forever.
	// A container killed before start wrote nothing: its streams end only
	// when stopped, and waiting for them would make every delete of a
	// created container take the whole 5 s.
	if started == nil {
		select {
		case <-o.streams:
		case <-time.After(5 * time.Second):
		}
	}
	o.stopIO()
	o.mu.Lock()
	o.st.ExitStatus, o.st.Exited = code, time.Now().UTC()
	o.setStatus(statusStopped)
	o.mu.Unlock()
	o.ctl.Close()
	o.leave()
	if o.tty != nil {
		o.tty.Close()
	}
	o.log.Info("container exited", "status", code)
	return code
}
