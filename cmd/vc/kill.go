package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("kill", command{usage: "[-s SIGNAL] CONTAINER...", short: "send a signal (default KILL) to containers' main processes", run: killCmd})
}

func killCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("kill", commands["kill"].usage)
	name := fs.String("s", "KILL", "the signal: a name (TERM, SIGTERM) or a number")
	fs.StringVar(name, "signal", "KILL", "the same as -s")
	ids, err := parseContainers(ctx, g, fs, args)
	if err != nil {
		return err
	}
	sig, err := parseSignal(*name)
	if err != nil {
		return err
	}
	for _, id := range ids {
		s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
		if err != nil {
			return err
		}
		// The container's init only, as docker does: a server that
		// reloads on HUP must keep its workers.
		err = s.Container(id).Kill(ctx, uint32(sig), false)
		s.Close()
		if err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
		fmt.Println(id)
	}
	return nil
}

// parseSignal reads a signal as docker and kill(1) take it: KILL, SIGKILL
// or 9.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("-s %q: no such signal: %w", s, errdefs.ErrInvalidArgument)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("-s %q: no such signal: %w", s, errdefs.ErrInvalidArgument)
	}
	return sig, nil
}
