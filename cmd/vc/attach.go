package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

func init() {
	register("attach", command{
		usage: "[--no-stdin] [--sig-proxy=false] CONTAINER",
		short: "connect the terminal to a running container's output and input (Ctrl-P Ctrl-Q detaches)",
		run:   attachCmd,
	})
}

// The owner of every container serves its live output, and its input when
// it was run with -i in the background, on its control socket
// (pkg/vc/owner's attach). An owner of an older vc served them on
// attachSocket, in the same multiplexed form.
const attachSocket = "attach.sock"

func attachCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("attach", commands["attach"].usage)
	noStdin := fs.Bool("no-stdin", false, "do not send the terminal's input")
	sigProxy := fs.Bool("sig-proxy", true, "pass the signals vc receives on to the container (not with a terminal)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: want exactly one")
	}
	id, err := resolveContainer(ctx, g, fs.Arg(0))
	if err != nil {
		return err
	}
	conn, err := dialAttach(ctx, g, id)
	if err != nil {
		return err
	}
	return attached(ctx, g, id, conn, !*noStdin, *sigProxy)
}

// dialAttach connects to a running container's attach socket.
func dialAttach(ctx context.Context, g *globals, id string) (net.Conn, error) {
	if err := persist.ValidateID("container", id); err != nil {
		return nil, err
	}
	st, err := vc.StatusSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return nil, err
	}
	if st.State == vc.StateStopped {
		return nil, fmt.Errorf("container %s is stopped: start it first (vc start -a)", id)
	}
	dir := filepath.Join(g.stateRoot, id)
	conn, err := vcowner.Dial(filepath.Join(dir, controlSocket))
	if errors.Is(err, fs.ErrNotExist) {
		// An older vc's owner.
		if conn, lerr := net.Dial("unix", filepath.Join(dir, attachSocket)); lerr == nil {
			return conn, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: attach: %w", id, err)
	}
	return conn, nil
}

// attached copies the container's output from conn to the terminal and,
// with stdin, the terminal's input to it, until the container's output
// ends; then it exits with the container's code. Ctrl-P Ctrl-Q on a
// terminal detaches and leaves the container running.
func attached(ctx context.Context, g *globals, id string, conn net.Conn, stdin, sigProxy bool) error {
	defer conn.Close()
	o, err := savedOptions(g, id)
	if err != nil {
		return err
	}
	tty := o.TTY && isTerminal(os.Stdin)
	detached := make(chan struct{})
	if stdin && o.Interactive {
		if tty {
			restore, err := rawTerminal()
			if err != nil {
				return err
			}
			defer restore()
		}
		go func() {
			if copyUntilDetach(conn, os.Stdin, tty) {
				close(detached)
				conn.Close()
			}
		}()
	}
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.TTY || sigProxy {
		stop := forwardSignals(ctx, s, id, o.TTY, tty)
		defer stop()
	}
	rerr := vcowner.Demux(conn, os.Stdout, os.Stderr)
	select {
	case <-detached:
		fmt.Fprintf(os.Stderr, "\r\nvc attach: detached from %s\r\n", id)
		return nil
	default:
	}
	if rerr != nil && !errors.Is(rerr, net.ErrClosed) {
		return fmt.Errorf("container %s: attach: %w", id, rerr)
	}
	code, err := waitStopped(ctx, g, id)
	if err != nil {
		return err
	}
	return exitError{code: int(code)}
}

// detachKeys are docker's: Ctrl-P Ctrl-Q.
var detachKeys = []byte{0x10, 0x11}

// copyUntilDetach copies in to out; on a terminal it stops at the detach
// keys and reports it did. A lone Ctrl-P is passed on with what follows.
func copyUntilDetach(out io.Writer, in io.Reader, tty bool) bool {
	if !tty {
		io.Copy(out, in)
		return false
	}
	buf := make([]byte, 4096)
	held := false // the last read ended with Ctrl-P
	for {
		n, err := in.Read(buf)
		p := buf[:n]
		if held {
			if n > 0 && p[0] == detachKeys[1] {
				return true
			}
			out.Write(detachKeys[:1])
			held = false
		}
		if i := bytes.Index(p, detachKeys); i >= 0 {
			out.Write(p[:i])
			return true
		}
		if n > 0 && p[n-1] == detachKeys[0] {
			p, held = p[:n-1], true
		}
		if _, werr := out.Write(p); werr != nil || err != nil {
			return false
		}
	}
}
