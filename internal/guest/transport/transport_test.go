package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func frame(stream uint32, typ byte, payload string) []byte {
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	binary.BigEndian.PutUint32(b[:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[4:8], stream)
	b[8] = typ
	return append(b, payload...)
}

// pipeConn is a serialConn reading from a pipe the test writes to.
func pipeConn(t *testing.T) (*serialConn, *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &serialConn{f: r, done: make(chan struct{})}, w
}

func readN(t *testing.T, c *serialConn, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// TestSerialNewClientEndsConnection: a request on stream 1 after other
// frames is a new host client the guest did not see connect: the
// connection ends there, and what was read of the new client is carried
// over.
func TestSerialNewClientEndsConnection(t *testing.T) {
	c, w := pipeConn(t)
	f1 := frame(1, frameTypeRequest, "first")
	f3 := frame(3, frameTypeRequest, "second request, longer")
	next := frame(1, frameTypeRequest, "new client")
	go func() {
		// Split writes: a header across two reads, payload after it.
		w.Write(f1[:4])
		time.Sleep(20 * time.Millisecond)
		w.Write(append(f1[4:], f3[:12]...))
		time.Sleep(20 * time.Millisecond)
		w.Write(append(f3[12:], next...))
		w.Write([]byte("more"))
	}()
	if got := readN(t, c, len(f1)); !bytes.Equal(got, f1) {
		t.Fatalf("frame 1: %q", got)
	}
	if got := readN(t, c, len(f3)); !bytes.Equal(got, f3) {
		t.Fatalf("frame 3: %q", got)
	}
	n, err := c.Read(make([]byte, 100))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read after a new client's first request: %d, %v; want EOF", n, err)
	}
	// The carry holds the new client's frame (and maybe what followed,
	// if it came in the same read).
	if !bytes.HasPrefix(c.carry, next) {
		t.Errorf("carried %q, want it to start with %q", c.carry, next)
	}
	if _, err := c.Write([]byte("late answer")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after the host reconnected: %v, want net.ErrClosed", err)
	}

	// The next connection starts with the carried bytes.
	c2 := &serialConn{f: c.f, done: make(chan struct{})}
	c2.rbuf = append(c2.raw[:0], c.carry...)
	if got := readN(t, c2, len(next)); !bytes.Equal(got, next) {
		t.Errorf("next connection read %q, want %q", got, next)
	}
}

func TestSerialHangup(t *testing.T) {
	c, w := pipeConn(t)
	f := frame(1, frameTypeRequest, "x")
	w.Write(f)
	w.Close()
	if got := readN(t, c, len(f)); !bytes.Equal(got, f) {
		t.Fatalf("read %q", got)
	}
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after hangup: %v, want EOF", err)
	}
	if !c.hungUp.Load() || len(c.carry) != 0 {
		t.Errorf("hungUp %v, carry %q", c.hungUp.Load(), c.carry)
	}
}

// TestSerialCloseStopsRead: Close ends a read blocked on the port (with a
// deadline) and waits for it.
func TestSerialCloseStopsRead(t *testing.T) {
	c, _ := pipeConn(t)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a read was blocked")
	}
	if err := <-errc; err == nil {
		t.Error("blocked read returned no error after Close")
	}
	select {
	case <-c.done:
	default:
		t.Error("done not closed")
	}
	if err := c.SetDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline after Close: %v", err)
	}
}

// TestSerialStaleHangupThenGone: a connection begun with a carry takes a
// first EOF for the late hangup of the connection before it and waits
// for the host to be back; when the host does not come back, it is a
// hangup after all: EOF, and writes refused.
func TestSerialStaleHangupThenGone(t *testing.T) {
	c, w := pipeConn(t)
	c.staleHangup = true
	w.Close()
	start := time.Now()
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the host left for good: %v, want EOF", err)
	}
	if waited := time.Since(start); waited < staleHangupWait {
		t.Errorf("gave up after %v, want it to wait %v for the host", waited, staleHangupWait)
	}
	if !c.hungUp.Load() {
		t.Error("not hung up")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after the hangup: %v, want net.ErrClosed", err)
	}
}
