// Package transport gives the agent its listeners: vsock, a virtio-serial
// port found by name, and a unix socket.
package transport

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
func Serial(dev string) net.Listener {
	return &serialListener{dev: dev, closed: make(chan struct{})}
}

type serialListener struct {
	dev      string
	mu       sync.Mutex
	cur      *serialConn
	closed   chan struct{}
	closeOne sync.Once
}

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
	for {
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		f, err := os.OpenFile(l.dev, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", l.dev, err)
		}
		if hostConnected(f) {
			c := &serialConn{f: f, done: make(chan struct{}), addr: serialAddr(l.dev)}
			l.mu.Lock()
			l.cur = c
			l.mu.Unlock()
			return c, nil
		}
		f.Close()
		select {
		case <-time.After(50 * time.Millisecond):
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
}

// hostConnected reports whether the host end of the port is open: the
// driver signals POLLHUP while it is not.
func hostConnected(f *os.File) bool {
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN | unix.POLLOUT}}
	n, err := unix.Poll(fds, 0)
	if err != nil || n == 0 {
		return err == nil
	}
	return fds[0].Revents&unix.POLLHUP == 0
}

func (l *serialListener) Close() error {
	l.closeOne.Do(func() { close(l.closed) })
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil {
		l.cur.Close()
	}
	return nil
}

func (l *serialListener) Addr() net.Addr { return serialAddr(l.dev) }

type serialAddr string

func (a serialAddr) Network() string { return "virtio-serial" }
func (a serialAddr) String() string  { return string(a) }

type serialConn struct {
	f       *os.File
	addr    serialAddr
	done    chan struct{}
	closeMu sync.Once
}

func (c *serialConn) Read(b []byte) (int, error)  { return c.f.Read(b) }
func (c *serialConn) Write(b []byte) (int, error) { return c.f.Write(b) }
func (c *serialConn) Close() error {
	var err error
	c.closeMu.Do(func() {
		err = c.f.Close()
		close(c.done)
	})
	return err
}
func (c *serialConn) LocalAddr() net.Addr                { return c.addr }
func (c *serialConn) RemoteAddr() net.Addr               { return serialAddr("host") }
func (c *serialConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *serialConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *serialConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }
