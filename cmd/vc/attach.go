package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("attach", command{
		usage: "[--no-stdin] [--sig-proxy=false] CONTAINER",
		short: "connect the terminal to a running container's output and input (Ctrl-P Ctrl-Q detaches)",
		run:   attachCmd,
	})
}

// The owner of every container serves its live output, and its input when
// it was run with -i in the background, on a unix socket in the sandbox's
// state directory. Output goes out in docker's multiplexed form: a frame
// of an 8-byte header (stream 1 or 2, three zero bytes, the length as a
// big-endian uint32) and the bytes; what a client writes is the
// container's standard input.
const attachSocket = "attach.sock"

// attachServer fans the container's output out to attached clients and
// feeds what they send to its stdin.
type attachServer struct {
	l     net.Listener
	stdin io.Writer // nil: the container's stdin is not open to clients
	mu    sync.Mutex
	conns map[net.Conn]bool
}

// serveAttach listens on dir's attach socket.
func serveAttach(dir string, stdin io.Writer) (*attachServer, error) {
	path := filepath.Join(dir, attachSocket)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("attach socket: %w", err)
	}
	// Only root may attach: the socket carries the container's input.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("attach socket: %w", err)
	}
	a := &attachServer{l: l, stdin: stdin, conns: map[net.Conn]bool{}}
	go a.accept()
	return a, nil
}

func (a *attachServer) accept() {
	for {
		c, err := a.l.Accept()
		if err != nil {
			return
		}
		a.mu.Lock()
		a.conns[c] = true
		a.mu.Unlock()
		go func() {
			// A client's input is the container's; without stdin it is
			// only read to notice the client leaving.
			w := a.stdin
			if w == nil {
				w = io.Discard
			}
			io.Copy(w, c)
			a.drop(c)
		}()
	}
}

func (a *attachServer) drop(c net.Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
	c.Close()
}

// stream is the writer of the container's stream 1 (stdout) or 2
// (stderr). A client that does not take a write within a second is
// dropped: the container's output waits no longer for it. With no client
// (the usual case) a write costs a lock and nothing else.
func (a *attachServer) stream(n byte) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		a.mu.Lock()
		if len(a.conns) == 0 {
			a.mu.Unlock()
			return len(p), nil
		}
		frame := make([]byte, 8, 8+len(p))
		frame[0] = n
		binary.BigEndian.PutUint32(frame[4:], uint32(len(p)))
		frame = append(frame, p...)
		var slow []net.Conn
		for c := range a.conns {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(frame); err != nil {
				slow = append(slow, c)
			}
		}
		a.mu.Unlock()
		for _, c := range slow {
			a.drop(c)
		}
		return len(p), nil
	})
}

// Close ends every attachment: the container's output has ended.
func (a *attachServer) Close() {
	a.l.Close()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.conns = map[net.Conn]bool{}
	a.mu.Unlock()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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
	conn, err := net.Dial("unix", filepath.Join(g.stateRoot, id, attachSocket))
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
	rerr := demux(conn, os.Stdout, os.Stderr)
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

// demux writes the frames read from r to stdout and stderr.
func demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		w := stdout
		if hdr[0] == 2 {
			w = stderr
		}
		if _, err := io.CopyN(w, r, int64(binary.BigEndian.Uint32(hdr[4:]))); err != nil {
			return err
		}
	}
}
