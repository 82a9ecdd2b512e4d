package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"

	"github.com/virtcontainers/vc/pkg/vc"
)

// stdio is where containerd wants a process's standard streams.
type stdio struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// outputKind is how output reaches containerd: the stdout field is a path
// (FIFO or file) or a URI.
type outputKind int

const (
	outputNone   outputKind = iota // no stdout, no stderr
	outputFIFO                     // paths of FIFOs (or plain files)
	outputBinary                   // binary:// (or binary-v2://): a logging program reads pipes
	outputFile                     // file://: both streams appended to one file
)

func (k outputKind) String() string {
	return [...]string{"none", "fifo", "binary", "file"}[k]
}

// parseOutput reads the scheme of the stdout field, as runc-v2 does: a
// bare path (or fifo://) is a FIFO, binary:// and binary-v2:// name a
// logging program, file:// a log file.
func parseOutput(stdout, stderr string) (outputKind, *url.URL, error) {
	if stdout == "" && stderr == "" {
		return outputNone, nil, nil
	}
	if stdout == "" {
		return outputFIFO, nil, nil
	}
	u, err := url.Parse(stdout)
	if err != nil {
		return 0, nil, fmt.Errorf("stdout %q: %w: %w", stdout, err, errdefs.ErrInvalidArgument)
	}
	switch u.Scheme {
	case "", "fifo":
		return outputFIFO, u, nil
	case "binary", "binary-v2":
		if u.Path == "" {
			return 0, nil, fmt.Errorf("stdout %q: no logging binary path: %w", stdout, errdefs.ErrInvalidArgument)
		}
		return outputBinary, u, nil
	case "file":
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return 0, nil, fmt.Errorf("stdout %q: want file:///absolute/path: %w", stdout, errdefs.ErrInvalidArgument)
		}
		return outputFile, u, nil
	}
	return 0, nil, fmt.Errorf("stdout %q: unknown scheme %q (want a FIFO path, binary:// or file://): %w", stdout, u.Scheme, errdefs.ErrInvalidArgument)
}

// binaryArgs are the logging program's arguments: each query key, then
// its first value, as runc-v2 passes them.
func binaryArgs(u *url.URL) []string {
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	return args
}

// processIO is containerd's side of a process's streams (FIFOs, a
// logging program, a log file); pkg/vc/owner's Process copies them to and
// from the guest, and closes the output here once it is over.
type processIO struct {
	log    *slog.Logger
	kind   outputKind
	stdin  io.ReadCloser  // FIFO read end, nil without stdin
	keep   io.Closer      // our own write end of the stdin FIFO: CloseIO closes it
	stdout io.WriteCloser // nil without stdout
	stderr io.WriteCloser // nil without stderr (or with a terminal)
	closed sync.Once
	// outClosed guards closing the output: once it has all been copied
	// (containerd reads the FIFOs to EOF), or by closeAll.
	outClosed sync.Once
	// closers run once the output is copied (FIFO read ends kept open so
	// that writes never fail while containerd reopens its side).
	closers []io.Closer
	logger  *exec.Cmd // the binary:// logging program
}

// openIO opens containerd's side of a process's streams. Nothing is read
// or written until start. On error nothing stays open.
func openIO(ctx context.Context, log *slog.Logger, ns, id string, s stdio) (_ *processIO, err error) {
	kind, u, err := parseOutput(s.Stdout, s.Stderr)
	if err != nil {
		return nil, err
	}
	p := &processIO{log: log, kind: kind}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()
	if s.Stdin != "" {
		// Opened for reading first without blocking, then our own write
		// end keeps the FIFO open until CloseIO.
		r, err := fifo.OpenFifo(context.WithoutCancel(ctx), s.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("stdin %q: %w", s.Stdin, err)
		}
		p.stdin = r
		w, err := fifo.OpenFifo(context.WithoutCancel(ctx), s.Stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("stdin %q: %w", s.Stdin, err)
		}
		p.keep = w
	}
	switch kind {
	case outputFIFO:
		if p.stdout, err = p.openOutput(s.Stdout); err != nil {
			return nil, fmt.Errorf("stdout: %w", err)
		}
		if !s.Terminal {
			if p.stderr, err = p.openOutput(s.Stderr); err != nil {
				return nil, fmt.Errorf("stderr: %w", err)
			}
		}
	case outputFile:
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, fmt.Errorf("stdout %q: %w", s.Stdout, err)
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("stdout %q: %w", s.Stdout, err)
		}
		sw := &sharedWriter{f: f}
		p.stdout = sw.ref()
		if !s.Terminal {
			p.stderr = sw.ref()
		}
	case outputBinary:
		if err := p.startLogger(ns, id, u); err != nil {
			return nil, fmt.Errorf("stdout %q: %w", s.Stdout, err)
		}
	}
	return p, nil
}

// openOutput opens a FIFO (or plain file) for writing; "" is no stream.
func (p *processIO) openOutput(path string) (io.WriteCloser, error) {
	if path == "" {
		return nil, nil
	}
	if u, err := url.Parse(path); err == nil && u.Scheme == "fifo" {
		path = u.Path
	}
	isFifo, err := fifo.IsFifo(path)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	if !isFifo {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|syscall.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", path, err)
		}
		return f, nil
	}
	// The write end opens once containerd has opened the read end; our
	// own read end keeps writes from failing with EPIPE while it is away.
	w, err := fifo.OpenFifo(context.Background(), path, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	r, err := fifo.OpenFifo(context.Background(), path, syscall.O_RDONLY, 0)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("%q: %w", path, err)
	}
	p.closers = append(p.closers, r)
	return w, nil
}

// startLogger runs the binary:// logging program: it reads the process's
// stdout on fd 3 and stderr on fd 4, and signals readiness by closing (or
// for binary-v2, writing a byte to) fd 5.
func (p *processIO) startLogger(ns, id string, u *url.URL) (err error) {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	files = append(files, outR)
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return err
	}
	files = append(files, errR)
	readyR, readyW, err := os.Pipe()
	if err != nil {
		outW.Close()
		errW.Close()
		return err
	}
	files = append(files, readyR, readyW)
	cmd := exec.Command(u.Path, binaryArgs(u)...)
	cmd.Env = append(os.Environ(), "CONTAINER_ID="+id, "CONTAINER_NAMESPACE="+ns)
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		outW.Close()
		errW.Close()
		return fmt.Errorf("start logging binary: %w", err)
	}
	readyW.Close()
	files = files[:len(files)-1]
	p.stdout, p.stderr, p.logger = outW, errW, cmd
	b := make([]byte, 1)
	n, rerr := readyR.Read(b)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return fmt.Errorf("logging binary: %w", rerr)
	}
	if u.Scheme == "binary-v2" && n == 0 {
		return fmt.Errorf("logging binary %s exited before it was ready", u.Path)
	}
	return nil
}

// vcIO is what the process's streams are copied to and from.
func (p *processIO) vcIO() vc.IO {
	var io vc.IO
	if p.stdin != nil {
		io.Stdin = p.stdin
	}
	if p.stdout != nil {
		io.Stdout = p.stdout
	}
	if p.stderr != nil {
		io.Stderr = p.stderr
	}
	return io
}

// outputEnded closes the output once it has all been copied: containerd
// reads the FIFOs to EOF before it considers a process's output complete.
func (p *processIO) outputEnded(err error) {
	if err != nil {
		p.log.Debug("output copy ended", "err", err)
	}
	p.closeOutput()
}

// closeStdin closes our write end of the stdin FIFO: once containerd has
// closed its own, the copy reads EOF and closes the process's stdin.
func (p *processIO) closeStdin() {
	if p.keep != nil {
		p.keep.Close()
	}
}

// closeAll closes everything: the output writers (the logging program then
// reads EOF and is given time to exit), the FIFOs, stdin.
func (p *processIO) closeAll() {
	p.closed.Do(func() {
		p.closeOutput()
		for _, c := range []io.Closer{p.keep, p.stdin} {
			if c != nil {
				c.Close()
			}
		}
	})
}

// closeOutput closes the output writers: containerd reads EOF from the
// FIFOs, a logging program from its pipes (and is then given time to
// exit).
func (p *processIO) closeOutput() {
	p.outClosed.Do(func() {
		for _, c := range []io.Closer{p.stdout, p.stderr} {
			if c != nil {
				c.Close()
			}
		}
		for _, c := range p.closers {
			c.Close()
		}
		if p.logger != nil {
			go stopLogger(p.log, p.logger)
		}
	})
}

// stopLogger waits for the logging program to exit after its input ended;
// one that does not gets SIGTERM, then SIGKILL.
func stopLogger(log *slog.Logger, cmd *exec.Cmd) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for _, step := range []struct {
		wait time.Duration
		sig  syscall.Signal
	}{{2 * time.Second, syscall.SIGTERM}, {10 * time.Second, syscall.SIGKILL}, {5 * time.Second, 0}} {
		select {
		case <-done:
			return
		case <-time.After(step.wait):
			if step.sig != 0 {
				log.Warn("logging binary still running; signalling it", "signal", step.sig)
				cmd.Process.Signal(step.sig)
			}
		}
	}
}

// sharedWriter is one file written by both output streams; it is closed
// when both are.
type sharedWriter struct {
	mu   sync.Mutex
	f    *os.File
	refs int
}

func (s *sharedWriter) ref() io.WriteCloser {
	s.mu.Lock()
	s.refs++
	s.mu.Unlock()
	return &sharedRef{s: s}
}

type sharedRef struct {
	s    *sharedWriter
	once sync.Once
}

func (r *sharedRef) Write(b []byte) (int, error) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.s.f.Write(b)
}

func (r *sharedRef) Close() error {
	var err error
	r.once.Do(func() {
		r.s.mu.Lock()
		defer r.s.mu.Unlock()
		r.s.refs--
		if r.s.refs == 0 {
			err = r.s.f.Close()
		}
	})
	return err
}
