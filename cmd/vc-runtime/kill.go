package main

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

func init() {
	register("kill", command{usage: "[--all] ID [SIGNAL]", short: "send a signal (default SIGTERM) to the container's process", run: killCmd})
}

func killCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("kill")
	all := fs.Bool("all", false, "send the signal to all processes in the container")
	fs.BoolVar(all, "a", false, "send the signal to all processes in the container")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("%q requires a minimum of 1 and a maximum of 2 arguments", "kill")
	}
	id := fs.Arg(0)
	sig := unix.SIGTERM
	if fs.NArg() == 2 {
		var err error
		if sig, err = parseSignal(fs.Arg(1)); err != nil {
			return err
		}
	}
	st, err := loadState(g.root, id)
	if err != nil {
		return err
	}
	switch st.status() {
	case statusCreated, statusRunning, statusPaused:
	default:
		return errNotRunning
	}
	return ownerRequest(g.root, id, request{Op: "kill", Signal: int(sig), All: *all})
}
