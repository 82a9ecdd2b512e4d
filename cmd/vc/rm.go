package main

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("rm", command{usage: "[-f] [-v] CONTAINER...", short: "remove stopped containers (-f: running ones too; -v: their anonymous volumes too)", run: rmCmd})
}

func rmCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("rm", commands["rm"].usage)
	force := fs.Bool("f", false, "stop a running container first")
	vols := fs.Bool("v", false, "remove the container's anonymous volumes too (named ones stay)")
	ids, err := parseContainers(ctx, g, fs, args)
	if err != nil {
		return err
	}
	removed := false
	defer func() {
		if removed {
			pruneImages(g)
		}
	}()
	for _, id := range ids {
		st, err := vc.StatusSandbox(ctx, g.stateRoot, id)
		if errdefs.IsNotFound(err) && *force {
			continue // as docker: rm -f of what is not there succeeds
		}
		if err != nil {
			return err
		}
		if st.State != vc.StateStopped {
			if !*force {
				return fmt.Errorf("container %s is %s; stop it or use -f: %w", id, st.State, errdefs.ErrFailedPrecondition)
			}
			if err := vc.StopSandbox(ctx, g.stateRoot, id, 2*time.Second); err != nil {
				return err
			}
		}
		// Read before the record goes.
		o, oerr := savedOptions(g, id)
		if err := vc.DeleteSandbox(ctx, g.stateRoot, id); err != nil {
			return err
		}
		if oerr == nil {
			leaveNetwork(g, o)
		}
		if *vols && oerr == nil {
			removeAnonymousVolumes(ctx, g, o)
		}
		removed = true
		fmt.Println(id)
	}
	return nil
}
