package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/vc"
)

// forwardSignals passes the signals a person sends `vc run` on to the
// container, as docker does. With a terminal, Ctrl-C travels as a byte and
// only window size changes need forwarding.
func forwardSignals(ctx context.Context, s *vc.Sandbox, id string, tty, raw bool) func() {
	return forwardExecSignals(ctx, s, id, id, tty, raw)
}

// forwardExecSignals does what forwardSignals does for process execID. A
// terminal's size changes are forwarded too; a raw terminal carries Ctrl-C
// and friends as bytes, so then only the size is.
func forwardExecSignals(ctx context.Context, s *vc.Sandbox, id, execID string, tty, raw bool) func() {
	// The SIGTERM this forwards also cancels the command's context (see
	// main): the forwarding must outlive it.
	ctx = context.WithoutCancel(ctx)
	ch := make(chan os.Signal, 8)
	if tty {
		signal.Notify(ch, unix.SIGWINCH)
		resize(ctx, s, id, execID)
	}
	if !raw {
		signal.Notify(ch, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-ch:
				if sig == unix.SIGWINCH {
					resize(ctx, s, id, execID)
					continue
				}
				s.Container(id).SignalProcess(ctx, execID, uint32(sig.(unix.Signal)))
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func resize(ctx context.Context, s *vc.Sandbox, id, execID string) {
	if sz, ok := terminalSize(); ok {
		s.Container(id).ResizeTerminal(ctx, execID, uint32(sz.Height), uint32(sz.Width))
	}
}

// terminalSize is the size of the terminal on stdin, stdout or stderr, if
// one is a terminal. A detached owner has none (console.Current panics
// then).
func terminalSize() (console.WinSize, bool) {
	for _, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if c, err := console.ConsoleFromFile(f); err == nil {
			if sz, err := c.Size(); err == nil {
				return sz, true
			}
		}
	}
	return console.WinSize{}, false
}

func rawTerminal() (func(), error) {
	c := console.Current()
	if err := c.SetRaw(); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	return func() { c.Reset() }, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
