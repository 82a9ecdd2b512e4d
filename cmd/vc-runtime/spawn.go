package main

import (
	"os"
	"os/exec"

	"github.com/virtcontainers/vc/internal/spawn"
)

// startChild starts this program's internal command sub (the owner of a
// container, or of an exec'd process) with internal/spawn, passing on the
// global flags; with stdio it gets this process's standard streams. It
// returns once the child reported: the running child when it is ready,
// else the error it reported, or died with (it has exited then). died
// describes a child that reported nothing.
func startChild(g *globals, sub string, payload any, stdio bool, died func(*exec.Cmd) string) (*exec.Cmd, error) {
	args := []string{"--root", g.root, "--log-format", g.logFormat, "--data-root", g.dataRoot, "--accel", g.accel}
	if g.logPath != "" {
		args = append(args, "--log", g.logPath)
	}
	if g.factory != "" {
		args = append(args, "--factory", g.factory)
	}
	if g.debug {
		args = append(args, "--debug")
	}
	o := spawn.Options{Args: append(args, sub), Payload: payload, Died: died}
	if stdio {
		o.Stdin, o.Stdout, o.Stderr = os.Stdin, os.Stdout, os.Stderr
	}
	return spawn.Start(o)
}
