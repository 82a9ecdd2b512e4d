package main

import (
	"context"
	"fmt"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("restart", command{usage: "[-t SECONDS] CONTAINER...", short: "stop containers and run them again in new VMs (what they wrote is kept)", run: restartCmd})
}

func restartCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("restart", commands["restart"].usage)
	secs := fs.Int("t", 10, "seconds to wait before killing")
	ids, err := parseContainers(ctx, g, fs, args)
	if err != nil {
		return err
	}
	for _, id := range ids {
		st, err := vc.StatusSandbox(ctx, g.stateRoot, id)
		if err != nil {
			return err
		}
		if st.State != vc.StateStopped {
			if err := stopOne(ctx, g, id, time.Duration(*secs)*time.Second); err != nil {
				return err
			}
			// The owner records the exit, then stops the VM: wait for
			// both, as vc wait does, before the new run.
			if _, err := waitStopped(ctx, g, id); err != nil {
				return err
			}
		}
		if err := startOne(ctx, g, id, nil); err != nil {
			return err
		}
		fmt.Println(id)
	}
	return nil
}
