package main

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("wait", command{usage: "CONTAINER...", short: "wait for containers to stop and print their exit codes", run: waitCmd})
}

func waitCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("wait", commands["wait"].usage)
	ids, err := parseContainers(ctx, g, fs, args)
	if err != nil {
		return err
	}
	for _, id := range ids {
		code, err := waitStopped(ctx, g, id)
		if err != nil {
			return err
		}
		fmt.Println(code)
	}
	return nil
}

// waitStopped polls the recorded state until the container and its VM
// are stopped (another process, its owner, records the exit and then
// stops the VM), and returns the container's exit code. Then, as after
// docker wait, rm succeeds.
func waitStopped(ctx context.Context, g *globals, id string) (int32, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := vc.StatusSandbox(ctx, g.stateRoot, id)
		if err != nil {
			return 0, err
		}
		if st.State == vc.StateStopped {
			cs, err := vc.ContainerStatuses(ctx, g.stateRoot, id)
			if err != nil {
				return 0, err
			}
			for _, c := range cs {
				if c.ID == id {
					return c.ExitCode, nil
				}
			}
			return 0, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}
