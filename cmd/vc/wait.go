package main

import (
	"context"
	"fmt"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("wait", command{usage: "CONTAINER...", short: "wait for containers to stop and print their exit codes", run: waitCmd})
}

func waitCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("wait", commands["wait"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: missing")
	}
	for _, id := range fs.Args() {
		code, err := waitStopped(ctx, g, id)
		if err != nil {
			return err
		}
		fmt.Println(code)
	}
	return nil
}

// waitStopped polls the container's recorded state (another process, its
// owner, records the exit) until it is stopped, and returns its exit code.
func waitStopped(ctx context.Context, g *globals, id string) (int32, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cs, err := vc.ContainerStatuses(ctx, g.stateRoot, id)
		if err != nil {
			return 0, err
		}
		for _, c := range cs {
			if c.ID == id && c.State == vc.StateStopped {
				return c.ExitCode, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}
