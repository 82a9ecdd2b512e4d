package vc

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/procnet"
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

// GuestListeners is the guest's listeners as Sandbox.ShareLoopback
// returns them.
type GuestListeners struct {
	// Generation numbers the set; it grows when the set changes.
	Generation uint64
	// Listeners are the TCP sockets listening and the unconnected UDP
	// sockets on the guest's loopback or wildcard addresses.
	Listeners []procnet.Listener
	// Refused are the host's ports the guest could not serve on its own
	// 127.0.0.1 (a socket of the guest holds them), as tcp/PORT.
	Refused []string
}

// ShareLoopback shares the guest's loopback with the host's, as a
// container without a network namespace shares the host's with runc. It
// returns the guest's listeners once their generation is after seen (0
// the first time), or after wait with the current ones. The caller serves
// each TCP port on the host's 127.0.0.1 (through DialPort) and calls
// again with the generation it served: output that the guest's processes
// write after a listener appeared waits for that call (at most a few
// seconds), so that a client told the port by that output finds it open
// on the host.
//
// With NAT.HostLoopback, host lists the host's loopback listeners: the
// guest serves their ports on its own 127.0.0.1 and relays to the host's
// (through NATGateway). Without it, host is ignored.
func (s *Sandbox) ShareLoopback(ctx context.Context, seen uint64, wait time.Duration, host []procnet.Listener) (GuestListeners, error) {
	s.mu.Lock()
	err := s.running()
	client := s.client
	hostLoopback := s.status.Config.NAT.HostLoopback
	s.mu.Unlock()
	if err != nil {
		return GuestListeners{}, err
	}
	req := &pb.ShareLoopbackRequest{Seen: seen, WaitMs: uint32(wait.Milliseconds())}
	if hostLoopback {
		req.Host = NATGateway.String()
		for _, l := range host {
			if l.Protocol == procnet.UDP {
				req.HostUdp = append(req.HostUdp, uint32(l.Port))
			} else {
				req.HostTcp = append(req.HostTcp, uint32(l.Port))
			}
		}
	}
	resp, err := pb.NewPortForwardClient(client).ShareLoopback(ctx, req)
	if err != nil {
		return GuestListeners{}, fmt.Errorf("sandbox %s: share loopback: %w", s.id, err)
	}
	out := GuestListeners{Generation: resp.GetGeneration(), Refused: resp.GetRefused()}
	for _, l := range resp.GetListeners() {
		a, err := netip.ParseAddr(l.GetAddress())
		if err != nil || l.GetPort() == 0 || l.GetPort() > 65535 {
			return GuestListeners{}, fmt.Errorf("sandbox %s: share loopback: agent's listener %s/%s:%d: not an address and port", s.id, l.GetProtocol(), l.GetAddress(), l.GetPort())
		}
		out.Listeners = append(out.Listeners, procnet.Listener{Protocol: l.GetProtocol(), Addr: a, Port: uint16(l.GetPort())})
	}
	return out, nil
}
