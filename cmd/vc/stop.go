package main

import (
	"context"
	"fmt"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("stop", command{usage: "[-t SECONDS] CONTAINER...", short: "stop containers and their VMs", run: stopCmd})
}

func stopCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("stop", commands["stop"].usage)
	secs := fs.Int("t", 10, "seconds to wait before killing")
	ids, err := parseContainers(ctx, g, fs, args)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := stopOne(ctx, g, id, time.Duration(*secs)*time.Second); err != nil {
			return err
		}
		fmt.Println(id)
	}
	return nil
}

// stopOne stops the container (SIGTERM, then SIGKILL) and its VM.
func stopOne(ctx context.Context, g *globals, id string, timeout time.Duration) error {
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	if s.Status().State != vc.StateStopped {
		if err := s.Container(id).Stop(ctx, timeout); err != nil {
			fmt.Printf("stop container %s: %v; stopping its VM\n", id, err)
		}
	}
	return s.Stop(ctx, timeout)
}
