// Package agent is the host side of the agent protocol: how to reach the
// guest's vc-agent.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/mdlayher/vsock"
)

// Address schemes.
const (
	// SchemeUnix is a unix socket: the host end of a virtio-serial port,
	// or an agent listening on a unix socket.
	SchemeUnix = "unix"
	// SchemeVsock is AF_VSOCK, through vhost-vsock.
	SchemeVsock = "vsock"
	// SchemeHybridVsock is Cloud Hypervisor's and Firecracker's hybrid
	// vsock: a unix socket on which the host asks for a guest port with
	// "CONNECT <port>\n" and is answered "OK <host port>\n".
	SchemeHybridVsock = "hvsock"
)

// Address is a parsed agent address.
type Address struct {
	Scheme string
	// Path is the socket's path, for unix and hvsock.
	Path string
	// CID is the guest's context id, for vsock.
	CID uint32
	// Port is the agent's vsock port, for vsock and hvsock.
	Port uint32
}

// String returns the address in the form ParseAddress reads.
func (a Address) String() string {
	switch a.Scheme {
	case SchemeUnix:
		return "unix://" + a.Path
	case SchemeVsock:
		return fmt.Sprintf("vsock://%d:%d", a.CID, a.Port)
	case SchemeHybridVsock:
		return fmt.Sprintf("hvsock://%s:%d", a.Path, a.Port)
	}
	return a.Scheme + "://?"
}

// ParseAddress parses one of
//
//	unix:///path/to/socket
//	vsock://CID:PORT
//	hvsock:///path/to/socket:PORT
//
// Errors name the address and wrap errdefs.ErrInvalidArgument.
func ParseAddress(addr string) (Address, error) {
	bad := func(format string, args ...any) (Address, error) {
		return Address{}, fmt.Errorf("agent address %q: %s: %w", addr, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return bad("want unix:///path, vsock://CID:PORT or hvsock:///path:PORT")
	}
	switch scheme {
	case SchemeUnix:
		if !strings.HasPrefix(rest, "/") {
			return bad("the socket path must be absolute (unix:///path/to/socket)")
		}
		return Address{Scheme: SchemeUnix, Path: rest}, nil
	case SchemeVsock:
		cid, port, ok := strings.Cut(rest, ":")
		if !ok {
			return bad("want vsock://CID:PORT")
		}
		c, err := strconv.ParseUint(cid, 10, 32)
		if err != nil {
			return bad("CID %q is not a 32-bit unsigned number", cid)
		}
		p, err := parsePort(port)
		if err != nil {
			return bad("%v", err)
		}
		return Address{Scheme: SchemeVsock, CID: uint32(c), Port: p}, nil
	case SchemeHybridVsock:
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return bad("want hvsock:///path/to/socket:PORT")
		}
		path, port := rest[:i], rest[i+1:]
		if !strings.HasPrefix(path, "/") {
			return bad("the socket path must be absolute (hvsock:///path/to/socket:PORT)")
		}
		p, err := parsePort(port)
		if err != nil {
			return bad("%v", err)
		}
		return Address{Scheme: SchemeHybridVsock, Path: path, Port: p}, nil
	default:
		return bad("unknown scheme %q (want unix, vsock or hvsock)", scheme)
	}
}

func parsePort(s string) (uint32, error) {
	p, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("port %q is not a 32-bit unsigned number", s)
	}
	return uint32(p), nil
}

// Dial connects to the agent at addr (see ParseAddress). The context
// bounds the connection and, for hybrid vsock, the handshake.
func Dial(ctx context.Context, addr string) (net.Conn, error) {
	a, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	conn, err := DialAddress(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("dial agent at %s: %w", addr, err)
	}
	return conn, nil
}

// DialAddress connects to the agent at a.
func DialAddress(ctx context.Context, a Address) (net.Conn, error) {
	switch a.Scheme {
	case SchemeUnix:
		var d net.Dialer
		return d.DialContext(ctx, "unix", a.Path)
	case SchemeVsock:
		return dialVsock(ctx, a.CID, a.Port)
	case SchemeHybridVsock:
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", a.Path)
		if err != nil {
			return nil, err
		}
		if err := hybridHandshake(ctx, conn, a.Port); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	return nil, fmt.Errorf("agent address scheme %q: %w", a.Scheme, errdefs.ErrInvalidArgument)
}

// dialVsock dials AF_VSOCK, which takes no context: the connect runs in a
// goroutine whose connection is dropped if the context ends first.
func dialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := vsock.Dial(cid, port, nil)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		ch <- result{c, nil}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// maxReplyLine bounds the hybrid vsock handshake reply.
const maxReplyLine = 128

// hybridHandshake asks the hybrid vsock muxer for port and reads its "OK"
// line, byte by byte so that nothing after it is consumed.
func hybridHandshake(ctx context.Context, conn net.Conn, port uint32) error {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		stop()
		conn.SetDeadline(time.Time{})
	}()
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		return fmt.Errorf("hybrid vsock: send CONNECT %d: %w", port, ctxErr(ctx, err))
	}
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := conn.Read(b); err != nil {
			return fmt.Errorf("hybrid vsock: read reply to CONNECT %d (got %q so far): %w", port, line, ctxErr(ctx, err))
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) > maxReplyLine {
			return fmt.Errorf("hybrid vsock: reply to CONNECT %d is longer than %d bytes: %q", port, maxReplyLine, line)
		}
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if !bytes.HasPrefix(line, []byte("OK ")) && !bytes.Equal(line, []byte("OK")) {
		return fmt.Errorf("hybrid vsock: CONNECT %d refused: %q: %w", port, line, errdefs.ErrUnavailable)
	}
	return nil
}

// ctxErr prefers the context's error to the i/o timeout it caused. The
// socket deadline is the context's, and may fire a moment before the
// context reports done: a timeout at or past the deadline is the
// context's too.
func ctxErr(ctx context.Context, err error) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return err
	}
	if ce := ctx.Err(); ce != nil {
		return fmt.Errorf("%w (%w)", ce, err)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d.Add(-10*time.Millisecond)) {
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}
