// Package transport gives the agent its listeners: vsock, a virtio-serial
// port found by name, and a unix socket.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// Unix listens on a unix socket at path, replacing a stale one. The socket
// is only accessible to its owner.
func Unix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Vsock listens on an AF_VSOCK port.
func Vsock(port uint32) (net.Listener, error) {
	return vsock.Listen(port, nil)
}

// FindSerialPort returns the /dev path of the virtio-serial port named
// name, from /sys/class/virtio-ports/*/name.
func FindSerialPort(sysRoot, name string) (string, error) {
	dir := filepath.Join(sysRoot, "class", "virtio-ports")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join("/dev", e.Name()), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %q under %s: %w", name, dir, os.ErrNotExist)
}

// Serial turns a virtio-serial port into a listener with one connection at
// a time. When the host side disconnects, reads see EOF, the connection is
// closed by its user, and the next Accept waits for the host to come back.
//
// The port is opened once and kept open for the listener's life: the
// virtio console driver throws away whatever the host has sent when the
// guest closes the port, so closing it between connections (or to poll
// for the host) could lose the first request of a host that has just
// (re)connected.
func Serial(dev string) net.Listener {
	return &serialListener{dev: dev, closed: make(chan struct{})}
}

type serialListener struct {
	dev      string
	mu       sync.Mutex
	f        *os.File
	cur      *serialConn
	closed   chan struct{}
	closeOne sync.Once
}

// A ttRPC frame header: length (4 bytes), stream id (4), type (1), flags
// (1), big endian.
const (
	frameHeaderLen      = 10
	frameTypeRequest    = 1
	firstClientStreamID = 1
)

// hostPollInterval is how often Accept looks for the host while it is not
// connected (the port signals POLLHUP all along, so poll cannot wait).
const hostPollInterval = 20 * time.Millisecond

func (l *serialListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	prev := l.cur
	l.mu.Unlock()
	if prev != nil {
		select {
		case <-prev.done:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	f, err := l.open()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		connected, err := hostConnected(f)
		if err != nil {
			select {
			case <-l.closed: // the file was closed under us
				return nil, net.ErrClosed
			default:
			}
			return nil, fmt.Errorf("poll %s: %w", l.dev, err)
		}
		if connected {
			// Undo the deadline the previous connection's Close set to
			// stop its reads and writes.
			if err := f.SetDeadline(time.Time{}); err != nil && !errors.Is(err, os.ErrNoDeadline) {
				return nil, fmt.Errorf("%s: %w", l.dev, err)
			}
			c := &serialConn{f: f, done: make(chan struct{}), addr: serialAddr(l.dev)}
			if prev != nil && len(prev.carry) > 0 {
				// The start of the new host connection, read by the
				// previous one: the guest has not seen the hangup
				// before it, which may still come.
				c.rbuf = append(c.raw[:0], prev.carry...)
				c.staleHangup = true
			}
			l.mu.Lock()
			l.cur = c
			l.mu.Unlock()
			return c, nil
		}
		select {
		case <-time.After(hostPollInterval):
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
}

func (l *serialListener) open() (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		return l.f, nil
	}
	f, err := os.OpenFile(l.dev, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", l.dev, err)
	}
	l.f = f
	return f, nil
}

// hostConnected reports whether the host end of the port is open: the
// driver signals POLLHUP while it is not. It does not use f.Fd(), which
// would put the file in blocking mode and disable deadlines.
func hostConnected(f *os.File) (bool, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	var (
		revents int16
		perr    error
	)
	err = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT}}
		for {
			_, perr = unix.Poll(fds, 0)
			if !errors.Is(perr, unix.EINTR) {
				break
			}
		}
		revents = fds[0].Revents
	})
	if err == nil {
		err = perr
	}
	return err == nil && revents&unix.POLLHUP == 0, err
}

func (l *serialListener) Close() error {
	l.closeOne.Do(func() { close(l.closed) })
	l.mu.Lock()
	cur, f := l.cur, l.f
	l.f = nil
	l.mu.Unlock()
	if cur != nil {
		cur.Close()
	}
	if f != nil {
		return f.Close()
	}
	return nil
}

func (l *serialListener) Addr() net.Addr { return serialAddr(l.dev) }

type serialAddr string

func (a serialAddr) Network() string { return "virtio-serial" }
func (a serialAddr) String() string  { return string(a) }

// serialConn is one host connection on the listener's port. It does not
// own the file: closing it stops its reads and writes (with a deadline in
// the past) and lets the listener accept the next connection.
//
// The port has no connection boundaries of its own: when the host hangs
// up and connects again quickly, the guest may never see the hangup (the
// driver's connected flag goes down and up before the reader runs). Left
// alone, the new client's requests would reach the old ttRPC server
// connection, which refuses them ("StreamID cannot be re-used") and may
// answer old requests to the new client. So reads follow the ttRPC
// framing, and a request on stream 1, which only a new client sends, ends
// this connection as a hangup would: the frame is carried over to the
// next one.
type serialConn struct {
	f    *os.File
	addr serialAddr

	// Read side, used by one reader at a time (ttRPC has one).
	raw      [64 << 10]byte
	rbuf     []byte // read from the port, not yet returned (in raw)
	cleared  int    // bytes from rbuf's start known to belong to this connection (may exceed len(rbuf))
	sawFrame bool
	carry    []byte // bytes of the host's next connection
	// staleHangup: this connection began with a carry, so the driver may
	// still report the hangup of the host connection before it (the
	// port's control messages come apart from its data).
	staleHangup bool
	// ops is held (shared) by each Read and Write, so that Close can
	// wait until none is left before the port goes to the next
	// connection.
	ops      sync.RWMutex
	closed   atomic.Bool
	hungUp   atomic.Bool
	done     chan struct{}
	closeOne sync.Once
}

func (c *serialConn) Read(b []byte) (int, error) {
	c.ops.RLock()
	defer c.ops.RUnlock()
	for {
		if c.closed.Load() || c.hungUp.Load() {
			return 0, io.EOF
		}
		if c.cleared > 0 && len(c.rbuf) > 0 {
			n := copy(b, c.rbuf[:min(len(c.rbuf), c.cleared)])
			c.rbuf = c.rbuf[n:]
			c.cleared -= n
			return n, nil
		}
		if c.cleared == 0 && len(c.rbuf) >= frameHeaderLen {
			h := c.rbuf[:frameHeaderLen]
			if c.sawFrame && h[8] == frameTypeRequest && binary.BigEndian.Uint32(h[4:8]) == firstClientStreamID {
				c.carry = append([]byte(nil), c.rbuf...)
				c.rbuf = nil
				c.hangUp()
				return 0, io.EOF
			}
			c.sawFrame = true
			c.cleared = frameHeaderLen + int(binary.BigEndian.Uint32(h[:4]))
			continue
		}
		// Need more: an incomplete header (kept at the front) or payload.
		if len(c.rbuf) == 0 {
			c.rbuf = c.raw[:0]
		} else if &c.rbuf[0] != &c.raw[0] {
			c.rbuf = append(c.raw[:0], c.rbuf...)
		}
		n, err := c.f.Read(c.raw[len(c.rbuf):])
		c.rbuf = c.raw[:len(c.rbuf)+n]
		if errors.Is(err, io.EOF) {
			if c.staleHangup {
				// The previous connection's hangup, seen late: the
				// host that is connected now is this connection's,
				// and it is back at once. Hanging up would drop its
				// requests in flight (seen under load: a request
				// after an immediate reconnection never answered).
				c.staleHangup = false
				if c.hostBack(staleHangupWait) {
					continue
				}
			}
			c.hangUp()
			return 0, io.EOF
		}
		if err != nil {
			return 0, err
		}
	}
}

// staleHangupWait is how long a connection begun with a carry waits for
// the host to be connected again after the late hangup of the connection
// before it: the driver applies the host's close and reopen back to back.
const staleHangupWait = time.Second

// hostBack waits up to d for the host end to be connected again.
func (c *serialConn) hostBack(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.closed.Load() {
		if ok, err := hostConnected(c.f); err != nil || ok {
			return err == nil
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(hostPollInterval / 4)
	}
	return false
}

// hangUp ends the connection's use of the port after the host hung up: a
// write blocked waiting for the host must not complete into the host's
// next connection.
func (c *serialConn) hangUp() {
	c.hungUp.Store(true)
	_ = c.f.SetWriteDeadline(time.Now())
}

func (c *serialConn) Write(b []byte) (int, error) {
	c.ops.RLock()
	defer c.ops.RUnlock()
	if c.closed.Load() || c.hungUp.Load() {
		return 0, net.ErrClosed
	}
	return c.f.Write(b)
}

func (c *serialConn) Close() error {
	c.closeOne.Do(func() {
		c.closed.Store(true)
		_ = c.f.SetDeadline(time.Now())
		c.ops.Lock() // wait for reads and writes in progress to give up
		c.ops.Unlock()
		close(c.done)
	})
	return nil
}

func (c *serialConn) LocalAddr() net.Addr  { return c.addr }
func (c *serialConn) RemoteAddr() net.Addr { return serialAddr("host") }

func (c *serialConn) SetDeadline(t time.Time) error {
	return c.deadline(t, c.f.SetDeadline)
}

func (c *serialConn) SetReadDeadline(t time.Time) error {
	return c.deadline(t, c.f.SetReadDeadline)
}

func (c *serialConn) SetWriteDeadline(t time.Time) error {
	return c.deadline(t, c.f.SetWriteDeadline)
}

// deadline sets a deadline on the port unless the connection is closed:
// the port's deadlines are then the listener's, stopping this
// connection's reads and writes.
func (c *serialConn) deadline(t time.Time, set func(time.Time) error) error {
	c.ops.RLock()
	defer c.ops.RUnlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	return set(t)
}
