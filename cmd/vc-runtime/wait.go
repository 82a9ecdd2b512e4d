package main

import (
	"context"
)

// run waits for the container to be started and to exit (or to be killed
// before it started, or its VM to die: pkg/vc/owner's Wait), tears the VM
// down (or leaves the VM it joined) and returns the exit status.
func (o *owner) run(ctx context.Context) int {
	code, err := o.own.Wait(ctx)
	if err != nil {
		code = 255
	}
	close(o.quit)
	o.own.Close()
	o.leave()
	if o.tty != nil {
		o.tty.Close()
	}
	o.log.Info("container exited", "status", code)
	return code
}
