package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("exec", command{
		usage: "[-i] [-t] [-e K=V] [-w DIR] CONTAINER [--] CMD ARGS...",
		short: "run a command in a running container",
		run:   execCmd,
	})
}

func execCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("exec", commands["exec"].usage)
	interactive := fs.Bool("i", false, "keep stdin open and forward it")
	tty := fs.Bool("t", false, "allocate a terminal")
	workdir := fs.String("w", "", "working directory")
	var envs listFlag
	fs.Var(&envs, "e", "set an environment variable K=V (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fs.Usage()
		return fmt.Errorf("CONTAINER and CMD: missing")
	}
	id, cmd := rest[0], rest[1:]
	if cmd[0] == "--" {
		cmd = cmd[1:]
	}
	if *tty && !isTerminal(os.Stdin) {
		return fmt.Errorf("-t: standard input is not a terminal")
	}
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	p := oci.DefaultSpec(cmd, envs, *workdir, *tty).Process
	execID := "exec-" + randomID()
	pio := vc.IO{Stdout: os.Stdout, Stderr: os.Stderr}
	if *interactive {
		pio.Stdin = os.Stdin
	}
	if *tty {
		pio.Stderr = nil
	}
	if *tty && *interactive {
		restore, err := rawTerminal()
		if err != nil {
			return err
		}
		defer restore()
	}
	if err := s.Container(id).Exec(ctx, execID, p); err != nil {
		return err
	}
	streamCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	streams := s.Container(id).IOStream(streamCtx, execID, pio)
	if !*interactive {
		s.Container(id).CloseStdin(ctx, execID)
	}
	stopSignals := forwardExecSignals(ctx, s, id, execID, *tty, *tty && *interactive)
	defer stopSignals()
	code, err := s.Container(id).WaitProcess(context.WithoutCancel(ctx), execID)
	if err != nil {
		return err
	}
	select {
	case <-streams:
	case <-time.After(5 * time.Second):
	}
	return exitError{code: int(code)}
}
