package vc

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
)

const (
	// maxPortChunk bounds the bytes one agent call carries.
	maxPortChunk = 64 << 10
	// portCloseTimeout bounds the agent's answer to a close.
	portCloseTimeout = 5 * time.Second
)

// PortConn is a TCP connection to a port of the guest's loopback, carried
// by the agent (its PortForward service). Reads and writes block as a TCP
// connection's do; it has no deadlines: Close ends a blocked Read or
// Write.
type PortConn struct {
	agent pb.PortForwardService
	id    uint64
	// Address is the guest address connected to: 127.0.0.1:PORT or
	// [::1]:PORT.
	Address string

	rmu sync.Mutex
	eof bool // guarded by rmu

	// ctx ends with Close: the host's calls then give up on answers that
	// may never come (a dead VM).
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

var _ io.ReadWriteCloser = (*PortConn)(nil)

// DialPort connects to port on the loopback of the sandbox's network
// namespace in the guest, where the pod's servers listen: 127.0.0.1, else
// ::1 (::1 first when ipv6), as a client of "localhost" does. A server
// that listens only on the guest's loopback is reached too.
func (s *Sandbox) DialPort(ctx context.Context, port int, ipv6 bool) (*PortConn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("port: %d is not a TCP port: %w", port, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	err := s.running()
	client := s.client
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a := pb.NewPortForwardClient(client)
	resp, err := a.ForwardDial(ctx, &pb.ForwardDialRequest{Port: uint32(port), Ipv6: ipv6})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: port %d: %w", s.id, port, err)
	}
	c := &PortConn{agent: a, id: resp.GetId(), Address: resp.GetAddress()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func (c *PortConn) isClosed() bool {
	return c.ctx.Err() != nil
}

// err turns an agent error into the connection's: io.ErrClosedPipe once
// the connection is closed.
func (c *PortConn) err(op string, err error) error {
	if c.isClosed() {
		return io.ErrClosedPipe
	}
	return fmt.Errorf("guest %s: %s: %w", c.Address, op, err)
}

// Read implements io.Reader.
func (c *PortConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.eof {
		return 0, io.EOF
	}
	if c.isClosed() {
		return 0, io.ErrClosedPipe
	}
	n := min(len(p), maxPortChunk)
	resp, err := c.agent.ForwardRead(c.ctx, &pb.ForwardReadRequest{Id: c.id, Len: uint32(n)})
	if err != nil {
		return 0, c.err("read", err)
	}
	if resp.GetEof() {
		c.eof = true
		return 0, io.EOF
	}
	return copy(p, resp.GetData()), nil
}

// Write implements io.Writer.
func (c *PortConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.isClosed() {
			return written, io.ErrClosedPipe
		}
		chunk := p[:min(len(p), maxPortChunk)]
		_, err := c.agent.ForwardWrite(c.ctx, &pb.ForwardWriteRequest{Id: c.id, Data: chunk})
		if err != nil {
			return written, c.err("write", err)
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// CloseWrite closes the write side: the guest's server reads EOF.
func (c *PortConn) CloseWrite() error {
	if c.isClosed() {
		return io.ErrClosedPipe
	}
	if _, err := c.agent.ForwardClose(c.ctx, &pb.ForwardCloseRequest{Id: c.id, WriteOnly: true}); err != nil {
		return c.err("close write", err)
	}
	return nil
}

// Close closes the connection in the guest, which ends its blocked reads
// and writes.
func (c *PortConn) Close() error {
	err := io.ErrClosedPipe
	c.closeOnce.Do(func() {
		// The guest's close ends the calls blocked there; the host's
		// end with ctx.
		ctx, cancel := context.WithTimeout(context.Background(), portCloseTimeout)
		defer cancel()
		_, err = c.agent.ForwardClose(ctx, &pb.ForwardCloseRequest{Id: c.id})
		c.cancel()
		if err != nil && !errdefs.IsNotFound(err) {
			err = fmt.Errorf("guest %s: close: %w", c.Address, err)
		} else {
			err = nil
		}
	})
	return err
}
