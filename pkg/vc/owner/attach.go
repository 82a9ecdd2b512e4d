package owner

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Attach fans a container's output out to the clients attached through
// the control socket and feeds what they send to its stdin.
type Attach struct {
	stdin  io.Writer // nil: the container's stdin is not open to clients
	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
}

// NewAttach makes the attachments of a container whose stdin, if not
// nil, takes what clients send.
func NewAttach(stdin io.Writer) *Attach {
	return &Attach{stdin: stdin, conns: map[net.Conn]bool{}}
}

func (a *Attach) add(c net.Conn) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		c.Close()
		return
	}
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

func (a *Attach) drop(c net.Conn) {
	a.mu.Lock()
	delete(a.conns, c)
	a.mu.Unlock()
	c.Close()
}

// Stream is the writer of the container's stream 1 (stdout) or 2
// (stderr). A client that does not take a write within a second is
// dropped: the container's output waits no longer for it. With no client
// (the usual case) a write costs a lock and nothing else.
func (a *Attach) Stream(n byte) io.Writer {
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

// Close ends every attachment, and refuses new ones: the container's
// output has ended.
func (a *Attach) Close() {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.closed = true
	for c := range a.conns {
		c.Close()
	}
	a.conns = map[net.Conn]bool{}
	a.mu.Unlock()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Demux writes the frames read from r (an attachment) to stdout and
// stderr, until r ends.
func Demux(r io.Reader, stdout, stderr io.Writer) error {
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
