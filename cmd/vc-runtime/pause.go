package main

import (
	"context"
)

func init() {
	register("pause", command{usage: "ID", short: "suspend all processes of a container", run: pauseCmd("pause")})
	register("resume", command{usage: "ID", short: "resume the processes of a paused container", run: pauseCmd("resume")})
}

func pauseCmd(op string) func(context.Context, *globals, []string) error {
	return func(ctx context.Context, g *globals, args []string) error {
		fs := newFlags(op)
		if err := fs.Parse(args); err != nil {
			return err
		}
		id, err := oneID(fs, op)
		if err != nil {
			return err
		}
		st, err := loadState(g.root, id)
		if err != nil {
			return err
		}
		switch s := st.status(); {
		case op == "pause" && s != statusRunning:
			return errNotRunning
		case op == "resume" && s != statusPaused:
			return errNotPaused
		}
		return ownerRequest(g.root, id, request{Op: op})
	}
}
