package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ErrEOF is what ReadStdout and ReadStderr return once a stream is over:
// everything the process wrote has been read. It matches io.EOF and
// errdefs.ErrOutOfRange, so the agent reports it as ttRPC code
// OutOfRange ("read past the end"), which a host client can test for;
// any other code is a real failure.
var ErrEOF error = eofError{}

type eofError struct{}

func (eofError) Error() string { return "EOF" }

func (eofError) Is(target error) bool {
	return target == io.EOF || target == errdefs.ErrOutOfRange
}

const (
	// streamLimit is how much output the agent buffers per stream before
	// it stops reading the pipe, so a process writing faster than the
	// host reads blocks, as it would on a pipe.
	streamLimit = 1 << 20
	// copyBuf is the size of the first read from a pipe or terminal; a
	// read that fills it doubles it, up to maxCopyBuf. Quiet processes keep
	// a small buffer; a fast writer gets large reads, and each ReadStdout
	// then carries more (64 MiB of stdout under TCG, make bench: 10-14
	// MiB/s with 32 KiB reads and a 64 KiB pipe, 27-28 MiB/s with reads
	// growing to 256 KiB and a 1 MiB pipe).
	copyBuf    = 16 << 10
	maxCopyBuf = 256 << 10
	// pipeSize is the capacity asked for a process's output pipes (best
	// effort: the kernel may cap it at fs.pipe-max-size).
	pipeSize = 1 << 20
)

// stream buffers what a process writes to one of its outputs, so that no
// output is lost when the process exits before the host has read it: a
// goroutine copies the pipe into the buffer, readers take from it, and
// the end of the stream is reported only once the pipe hit EOF and the
// buffer is empty.
type stream struct {
	mu      sync.Mutex
	buf     []byte
	eof     bool          // the source is exhausted
	err     error         // why the source ended, if not by EOF
	changed chan struct{} // closed and replaced whenever the state changes
	drained bool          // a reader has been told EOF
	src     *os.File      // what fill reads, closed by close
}

func newStream() *stream {
	return &stream{changed: make(chan struct{})}
}

// newClosedStream is a stream that is over already (a terminal process
// has no separate standard error).
func newClosedStream() *stream {
	s := newStream()
	s.eof = true
	return s
}

func (s *stream) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// fill copies src into the stream until src ends, then closes src. A
// terminal master reports EIO once the last slave is closed: that is the
// end of the stream too.
func (s *stream) fill(src *os.File) {
	s.mu.Lock()
	s.src = src
	closed := s.eof
	s.mu.Unlock()
	defer src.Close()
	if closed {
		return
	}
	b := make([]byte, copyBuf)
	for {
		n, err := src.Read(b)
		if n > 0 {
			if !s.put(b[:n]) {
				return
			}
			if n == len(b) && len(b) < maxCopyBuf {
				b = make([]byte, 2*len(b))
			}
		}
		if err != nil {
			s.mu.Lock()
			s.eof = true
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				s.err = err
			}
			s.notifyLocked()
			s.mu.Unlock()
			return
		}
	}
}

// put appends p, waiting while the buffer is full. It returns false if
// the stream was closed meanwhile.
func (s *stream) put(p []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.buf) >= streamLimit && !s.eof {
		ch := s.changed
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
	if s.eof {
		return false
	}
	s.buf = append(s.buf, p...)
	s.notifyLocked()
	return true
}

// read returns up to n buffered bytes, waiting for some if there are
// none; ErrEOF once the stream is over and empty. A reader whose context
// is done takes nothing: its caller may be gone, and what it took would
// be lost.
func (s *stream) read(ctx context.Context, n int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(s.buf) > 0 {
			var out []byte
			if n >= len(s.buf) {
				// All of it: hand the buffer over rather than copy it
				// (a copy costs on an emulated CPU).
				out, s.buf = s.buf, nil
			} else {
				out = make([]byte, n)
				copy(out, s.buf)
				s.buf = s.buf[:copy(s.buf, s.buf[n:])]
			}
			s.notifyLocked()
			return out, nil
		}
		if s.eof {
			s.drained = true
			if s.err != nil {
				return nil, fmt.Errorf("output ended with %v: %w", s.err, ErrEOF)
			}
			return nil, ErrEOF
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-ctx.Done():
			s.mu.Lock()
		}
	}
}

// close ends the stream, dropping what is buffered.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = nil
	s.eof = true
	s.drained = true
	if s.src != nil {
		// Unblocks fill if something still holds the pipe's write end.
		s.src.Close()
	}
	s.notifyLocked()
}

func (s *stream) isDrained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drained
}

// stdio is a process's end of its standard streams.
type stdio struct {
	// stdin is the write end of the process's stdin pipe, or the
	// terminal master.
	stdinMu     sync.Mutex
	stdin       *os.File
	stdinClosed bool
	writeMu     sync.Mutex // one write at a time
	// tty is the terminal master when the process has a terminal.
	tty    *os.File
	stdout *stream
	stderr *stream
	// closeAfterStart are the process's ends of the pipes, closed in the
	// agent once the process holds them.
	closeAfterStart []*os.File
}

// newPipes makes the pipes for a process without a terminal and returns
// the process's ends.
func newPipes() (st *stdio, stdin, stdout, stderr *os.File, err error) {
	var files []*os.File
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	files = append(files, inR, inW)
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	files = append(files, outR, outW)
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	files = append(files, errR, errW)
	// Room for a fast writer to run ahead of the agent: with the
	// default 64 KiB every few writes wait for the agent to be scheduled
	// (costly on a small guest), and each ReadStdout carries little.
	for _, w := range []*os.File{outW, errW} {
		unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, pipeSize)
	}
	st = &stdio{
		stdin:           inW,
		stdout:          newStream(),
		stderr:          newStream(),
		closeAfterStart: []*os.File{inR, outW, errW},
	}
	go st.stdout.fill(outR)
	go st.stderr.fill(errR)
	return st, inR, outW, errW, nil
}

// newTerminal wraps a terminal master received from the container.
func newTerminal(master *os.File) (*stdio, error) {
	// Make the master pollable, so reads wait in the runtime's poller
	// rather than in a thread each.
	fd, err := unix.FcntlInt(master.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	master.Close()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	m := os.NewFile(uintptr(fd), "pty-master")
	// The reading side gets its own descriptor so that closing it at EOF
	// leaves the master usable for stdin and resizing until cleanup.
	rfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, err
	}
	r := os.NewFile(uintptr(rfd), "pty-master-read")
	st := &stdio{stdin: m, tty: m, stdout: newStream(), stderr: newClosedStream()}
	go st.stdout.fill(r)
	return st, nil
}

// closeChildEnds closes the agent's copies of the process's ends.
func (st *stdio) closeChildEnds() {
	for _, f := range st.closeAfterStart {
		f.Close()
	}
	st.closeAfterStart = nil
}

// write writes to the process's standard input; it gives up when ctx
// ends (a process that does not read would block it forever).
func (st *stdio) write(ctx context.Context, p []byte) (int, error) {
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	st.stdinMu.Lock()
	f, closed := st.stdin, st.stdinClosed
	st.stdinMu.Unlock()
	if closed || f == nil {
		return 0, fmt.Errorf("stdin is closed: %w", errdefs.ErrFailedPrecondition)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Now()) })
	n, err := f.Write(p)
	if !stop() {
		// The deadline was set: clear it for the next write.
		_ = f.SetWriteDeadline(time.Time{})
		if err != nil {
			return n, ctx.Err()
		}
	}
	if err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed) {
			return n, fmt.Errorf("stdin: process no longer reads it: %w", errdefs.ErrFailedPrecondition)
		}
		return n, err
	}
	return n, nil
}

// closeStdin ends the process's standard input. A terminal cannot be
// half-closed: its EOF character (^D) is written instead, as a person
// at the terminal would.
func (st *stdio) closeStdin() error {
	st.stdinMu.Lock()
	defer st.stdinMu.Unlock()
	if st.stdinClosed {
		return nil
	}
	st.stdinClosed = true
	if st.tty != nil {
		_, err := st.tty.Write([]byte{4})
		if err != nil && !errors.Is(err, syscall.EIO) {
			return err
		}
		return nil
	}
	return st.stdin.Close()
}

// resize sets the terminal's window size.
func (st *stdio) resize(rows, cols uint16) error {
	if st.tty == nil {
		return fmt.Errorf("the process has no terminal: %w", errdefs.ErrFailedPrecondition)
	}
	rc, err := st.tty.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		return err
	}
	return ierr
}

// close releases everything; buffered output is dropped.
func (st *stdio) close() {
	st.closeChildEnds()
	st.stdinMu.Lock()
	st.stdinClosed = true
	if st.stdin != nil {
		st.stdin.Close()
	}
	if st.tty != nil && st.tty != st.stdin {
		st.tty.Close()
	}
	st.stdinMu.Unlock()
	st.stdout.close()
	st.stderr.close()
}
