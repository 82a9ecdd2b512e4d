package main

import (
	"context"
	"fmt"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("pause", command{usage: "CONTAINER...", short: "freeze containers' processes", run: pauseCmd(true)})
	register("unpause", command{usage: "CONTAINER...", short: "thaw paused containers", run: pauseCmd(false)})
}

func pauseCmd(pause bool) func(context.Context, *globals, []string) error {
	name := "pause"
	if !pause {
		name = "unpause"
	}
	return func(ctx context.Context, g *globals, args []string) error {
		fs := newFlags(name, commands[name].usage)
		ids, err := parseContainers(ctx, g, fs, args)
		if err != nil {
			return err
		}
		for _, id := range ids {
			s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
			if err != nil {
				return err
			}
			c := s.Container(id)
			if pause {
				err = c.Pause(ctx)
			} else {
				err = c.Resume(ctx)
			}
			s.Close()
			if err != nil {
				return err
			}
			fmt.Println(id)
		}
		return nil
	}
}
