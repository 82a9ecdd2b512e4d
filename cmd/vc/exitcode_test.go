package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/pkg/vc"
)

// A container that could not start ends vc with docker's exit code,
// chosen by the error's type as the agent sent it (through pkg/agent's
// edge), never by its message.
func TestStartErrorExitCodes(t *testing.T) {
	fromAgent := func(typed error) error {
		// What pkg/vc returns: the agent's typed status, made native.
		return fmt.Errorf("container x: %w", pb.ToNative(pb.ToGRPC(fmt.Errorf(`exec: "x": reason: %w`, typed))))
	}
	for _, c := range []struct {
		name string
		err  error
		code int
	}{
		{"command not found", fromAgent(vc.ErrCommandNotFound), 127},
		{"command not runnable", fromAgent(vc.ErrCommandNotRunnable), 126},
		{"arguments execve refuses (host)", fmt.Errorf("p: argument list too long: %w: %w", vc.ErrCommandNotRunnable, errdefs.ErrInvalidArgument), 126},
		{"another NotFound", fmt.Errorf("image x: %w", errdefs.ErrNotFound), 125},
		{"the words without the type", errors.New(`exec: "x": executable file not found in $PATH`), 125},
		{"the words without the type, NotFound", pb.ToNative(pb.ToGRPC(fmt.Errorf(`exec: "x": executable file not found in $PATH: %w`, errdefs.ErrNotFound))), 125},
	} {
		var ee exitError
		err := startError(c.err)
		if !errors.As(err, &ee) || ee.code != c.code || !errors.Is(err, c.err) {
			t.Errorf("%s: %v (code %d), want %d wrapping the error", c.name, err, ee.code, c.code)
		}
	}
}
