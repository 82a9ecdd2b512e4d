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
	// firstBuf is the size of a stream's first buffer, which the pipe
	// is read into; when a read fills the room it was given, the next
	// buffer is twice as large, up to streamLimit. Quiet processes keep a
	// small buffer; a fast writer gets large reads, and each ReadStdout
	// then carries more (64 MiB of stdout under TCG, make bench: 10-14
	// MiB/s with 32 KiB reads and a 64 KiB pipe, 27-28 MiB/s with reads
	// growing to 256 KiB and a 1 MiB pipe).
	firstBuf = 16 << 10
	// pipeSize is the capacity asked for a process's pipes (best
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
	src     *os.File      // what fill or the data port reads, closed by close
	// pending is the source before anyone read it: output stays in the
	// process's pipe until a reader comes, the first ReadStdout (fill
	// starts) or the data port (take), which moves the pipe to the port
	// without the buffer.
	pending *os.File
	filling bool // fill runs
	taken   bool // the data port has the source
}

func newStream() *stream {
	return &stream{changed: make(chan struct{})}
}

// setSource makes src the stream's source, read once a reader comes.
func (s *stream) setSource(src *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eof {
		src.Close()
		return
	}
	s.pending, s.src = src, src
}

// startLocked starts fill on the pending source, unless the data port
// has it or fill runs already.
func (s *stream) startLocked() {
	if s.pending == nil || s.filling || s.taken {
		return
	}
	s.filling = true
	go s.fill(s.pending)
}

// take hands the source to the data port, which sends it without the
// buffer; nil when fill has begun (or the stream is over): then the
// port reads the buffer.
func (s *stream) take() *os.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil || s.filling || s.taken || s.eof {
		return nil
	}
	s.taken = true
	return s.pending
}

// giveBack returns a source the data port took and did not finish.
func (s *stream) giveBack() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = false
	s.notifyLocked()
}

// finish ends a stream whose source the data port read to its end.
func (s *stream) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.src != nil {
		s.src.Close()
	}
	s.eof, s.drained = true, true
	s.notifyLocked()
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

// fill reads src into the stream until src ends, then closes src. A
// terminal master reports EIO once the last slave is closed: that is the
// end of the stream too.
//
// The pipe is read straight into the free end of buf's array, without
// the lock: readers only take from buf's front (reslicing it forward,
// never to another array), so the bytes read land where buf grows.
// Readers take buffered output without copying it, and the array is
// only replaced once its free end runs short.
func (s *stream) fill(src *os.File) {
	defer src.Close()
	size := firstBuf
	s.mu.Lock()
	s.src = src
	for !s.eof {
		if len(s.buf) >= streamLimit {
			ch := s.changed
			s.mu.Unlock()
			<-ch
			s.mu.Lock()
			continue
		}
		if room := cap(s.buf) - len(s.buf); room < size/4 {
			b := make([]byte, len(s.buf), len(s.buf)+size)
			copy(b, s.buf)
			s.buf = b
		}
		free := s.buf[len(s.buf):cap(s.buf)]
		free = free[:min(len(free), streamLimit-len(s.buf))]
		s.mu.Unlock()
		n, err := src.Read(free)
		s.mu.Lock()
		if s.eof { // closed meanwhile: what was read is dropped
			break
		}
		if n > 0 {
			s.buf = s.buf[:len(s.buf)+n]
			if n == len(free) && size < streamLimit {
				size *= 2
			}
			s.notifyLocked()
		}
		if err != nil {
			s.eof = true
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
				s.err = err
			}
			s.notifyLocked()
		}
	}
	s.mu.Unlock()
}

// read returns up to n buffered bytes, waiting for some if there are
// none; ErrEOF once the stream is over and empty. A reader whose context
// is done takes nothing: its caller may be gone, and what it took would
// be lost.
func (s *stream) read(ctx context.Context, n int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		s.startLocked()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if len(s.buf) > 0 {
			var out []byte
			if n >= len(s.buf) {
				// All of it: hand the bytes over rather than copy them
				// (a copy costs on an emulated CPU); fill goes on
				// past them in the same array.
				out = s.buf[:len(s.buf):len(s.buf)]
			} else {
				out = make([]byte, n)
				copy(out, s.buf)
			}
			s.buf = s.buf[len(out):]
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
	// Likewise for stdin, where one WriteStdin brings up to 1 MiB.
	// Not through Fd(), which would put the agent's end of stdin in
	// blocking mode, where a write no longer stops at its deadline.
	for _, w := range []*os.File{inW, outW, errW} {
		if rc, err := w.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
		}
	}
	st = &stdio{
		stdin:           inW,
		stdout:          newStream(),
		stderr:          newStream(),
		closeAfterStart: []*os.File{inR, outW, errW},
	}
	st.stdout.setSource(outR)
	st.stderr.setSource(errR)
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
	// A terminal is read at once, as before: a pty holds little, and
	// the data port copies it through the buffer anyway.
	st.stdout.setSource(r)
	st.stdout.mu.Lock()
	st.stdout.startLocked()
	st.stdout.mu.Unlock()
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
