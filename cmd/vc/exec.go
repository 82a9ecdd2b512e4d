package main

import (
	"context"
	"fmt"
	"os"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
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
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fs.Usage()
		return fmt.Errorf("CONTAINER and CMD: missing")
	}
	id, err := resolveContainer(ctx, g, rest[0])
	if err != nil {
		return err
	}
	cmd := rest[1:]
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
	env, err := resolveEnv(envs, nil)
	if err != nil {
		return err
	}
	st, err := s.Container(id).Status(ctx)
	if err != nil {
		return err
	}
	p := execProcess(st.Config.Spec, cmd, env, *workdir, *tty)
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
		return startError(err)
	}
	proc := vcowner.StartProcess(ctx, s.Container(id), execID, pio, nil)
	defer proc.Close()
	if !*interactive {
		proc.CloseStdin(ctx)
	}
	stopSignals := forwardExecSignals(ctx, s, id, execID, *tty, *tty && *interactive)
	defer stopSignals()
	code, err := proc.Wait(context.WithoutCancel(ctx), nil)
	if err != nil {
		return err
	}
	proc.Drain(vcowner.OutputEndTimeout)
	return exitError{code: int(code)}
}

// execProcess is the process `vc exec` starts, as docker exec makes it:
// the container's environment (with env added), working directory and
// user, unless workdir says otherwise.
func execProcess(spec *specs.Spec, cmd, env []string, workdir string, tty bool) *specs.Process {
	p := oci.DefaultSpec(cmd, nil, workdir, tty).Process
	if spec == nil || spec.Process == nil {
		p.Env = append(p.Env, env...)
		return p
	}
	p.Env = append(slices.Clone(spec.Process.Env), env...)
	p.User = spec.Process.User
	if workdir == "" {
		p.Cwd = spec.Process.Cwd
	}
	if spec.Process.Capabilities != nil {
		c := *spec.Process.Capabilities
		p.Capabilities = &c
	}
	return p
}
