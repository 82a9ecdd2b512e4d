package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"
)

func init() {
	register("run", command{
		usage: "[--bundle DIR] [--console-socket PATH] [--pid-file PATH] [--detach] ID",
		short: "create and start a container; without --detach wait for it and exit with its status",
		run:   runCmd,
	})
}

func runCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("run")
	var o createOptions
	bindCreateFlags(fs, &o)
	fs.BoolVar(&o.detach, "detach", false, "detach from the container's process")
	fs.BoolVar(&o.detach, "d", false, "detach from the container's process")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "run")
	if err != nil {
		return err
	}
	o.id = id
	// Signals to run are the container's (as runc forwards them); the
	// owner passes them on.
	sigs := make(chan os.Signal, 8)
	if !o.detach {
		signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
		defer signal.Stop(sigs)
	}
	cmd, err := createContainer(ctx, g, o)
	if err != nil {
		return err
	}
	// In the foreground without a console socket, a terminal of the
	// container's is the caller's: raw here, so that the container's
	// terminal alone processes input (as runc run -t does).
	if !o.detach && o.consoleSocket == "" {
		if spec, err := loadSpec(o.bundle); err == nil && spec.Process.Terminal {
			c := console.Current()
			if err := c.SetRaw(); err == nil {
				defer c.Reset()
			}
		}
	}
	if err := startContainer(g, id); err != nil {
		if st, lerr := loadState(g.root, id); lerr == nil {
			destroy(ctx, g.root, st)
		}
		cmd.Wait()
		return err
	}
	if o.detach {
		return nil
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	cmd.Wait()
	close(done)
	code := cmd.ProcessState.ExitCode()
	if code < 0 {
		code = 255 // the owner itself was killed
	}
	// runc run removes the container once it has exited.
	if st, err := loadState(g.root, id); err == nil {
		destroy(ctx, g.root, st)
	}
	return exitError{code}
}
