package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// The PortForward service: TCP connections to the guest's loopback that
// the host pulls bytes from and pushes bytes to (portforward.proto).

const (
	// maxForwards bounds the open forwarded connections (each holds a
	// socket of the agent).
	maxForwards = 1024
	// maxForwardRead bounds the bytes one ForwardRead returns.
	maxForwardRead = 256 << 10
	// forwardDialTimeout bounds a dial: the loopback answers at once, or
	// the port is closed.
	forwardDialTimeout = 5 * time.Second
)

var _ pb.PortForwardService = (*Agent)(nil)

// forwardState is the agent's forwarded connections.
type forwardState struct {
	mu    sync.Mutex
	next  uint64
	conns map[uint64]*forwardConn // guarded by mu
}

// forwardConn is one forwarded connection. Reads, and writes, are
// serialized: each call takes the next bytes in order.
type forwardConn struct {
	conn streamConn
	rmu  sync.Mutex
	wmu  sync.Mutex
}

// streamConn is a forwarded connection's socket: TCP (ForwardDial) or
// unix (a socket proxy's).
type streamConn interface {
	net.Conn
	CloseWrite() error
}

// add registers a connection and returns its id.
func (f *forwardState) add(c streamConn) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := len(f.conns); n >= maxForwards {
		return 0, fmt.Errorf("%d forwarded connections open already: %w", n, errdefs.ErrResourceExhausted)
	}
	if f.conns == nil {
		f.conns = map[uint64]*forwardConn{}
	}
	f.next++
	f.conns[f.next] = &forwardConn{conn: c}
	return f.next, nil
}

func (f *forwardState) get(id uint64) (*forwardConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.conns[id]
	if !ok {
		return nil, fmt.Errorf("forwarded connection id %d: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// closeAll closes every forwarded connection (DestroySandbox, shutdown).
func (f *forwardState) closeAll() {
	f.mu.Lock()
	conns := f.conns
	f.conns = nil
	f.mu.Unlock()
	for _, c := range conns {
		c.conn.Close()
	}
}

// ForwardDial implements PortForward.ForwardDial.
func (a *Agent) ForwardDial(ctx context.Context, req *pb.ForwardDialRequest) (*pb.ForwardDialResponse, error) {
	if req.GetPort() == 0 || req.GetPort() > 65535 {
		return nil, invalid("port", "%d is not a TCP port", req.GetPort())
	}
	f := &a.fwd
	hosts := []string{"127.0.0.1", "::1"}
	if req.GetIpv6() {
		hosts[0], hosts[1] = hosts[1], hosts[0]
	}
	port := strconv.Itoa(int(req.GetPort()))
	ctx, cancel := context.WithTimeout(ctx, forwardDialTimeout)
	defer cancel()
	var errs []error
	for _, h := range hosts {
		// One address at a time, on this goroutine: the socket is made
		// in the network namespace of this thread (the agent's).
		addr := net.JoinHostPort(h, port)
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fc := &forwardConn{conn: c.(*net.TCPConn)}
		f.mu.Lock()
		if n := len(f.conns); n >= maxForwards {
			f.mu.Unlock()
			c.Close()
			return nil, fmt.Errorf("port %d: %d forwarded connections open already: %w", req.GetPort(), n, errdefs.ErrResourceExhausted)
		}
		if f.conns == nil {
			f.conns = map[uint64]*forwardConn{}
		}
		f.next++
		id := f.next
		f.conns[id] = fc
		f.mu.Unlock()
		a.log.Debug("port forward: connected", "id", id, "address", addr)
		return &pb.ForwardDialResponse{Id: id, Address: addr}, nil
	}
	return nil, fmt.Errorf("port %d: nothing answers on the guest's loopback: %w: %w", req.GetPort(), errors.Join(errs...), errdefs.ErrUnavailable)
}

// endOnDone makes a blocked read or write (set is its deadline setter) end
// when ctx is done; the returned function undoes it, once the
// AfterFunc has run if it had started.
func endOnDone(ctx context.Context, set func(time.Time) error) func() {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		set(time.Unix(1, 0))
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired
			set(time.Time{})
		}
	}
}

// ForwardRead implements PortForward.ForwardRead.
func (a *Agent) ForwardRead(ctx context.Context, req *pb.ForwardReadRequest) (*pb.ForwardReadResponse, error) {
	fc, err := a.fwd.get(req.GetId())
	if err != nil {
		return nil, err
	}
	n := int(req.GetLen())
	if n <= 0 || n > maxForwardRead {
		n = maxForwardRead
	}
	fc.rmu.Lock()
	defer fc.rmu.Unlock()
	// The call's deadline (ttRPC carries it) ends the read with nothing
	// consumed.
	defer endOnDone(ctx, fc.conn.SetReadDeadline)()
	buf := make([]byte, n)
	m, err := fc.conn.Read(buf)
	switch {
	case m > 0:
		return &pb.ForwardReadResponse{Data: buf[:m]}, nil
	case errors.Is(err, io.EOF):
		return &pb.ForwardReadResponse{Eof: true}, nil
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return nil, fmt.Errorf("forwarded connection id %d: read: %w", req.GetId(), ctx.Err())
	case errors.Is(err, net.ErrClosed):
		return nil, fmt.Errorf("forwarded connection id %d: closed: %w", req.GetId(), errdefs.ErrNotFound)
	}
	return nil, fmt.Errorf("forwarded connection id %d: read: %w: %w", req.GetId(), err, errdefs.ErrUnavailable)
}

// ForwardWrite implements PortForward.ForwardWrite.
func (a *Agent) ForwardWrite(ctx context.Context, req *pb.ForwardWriteRequest) (*emptypb.Empty, error) {
	fc, err := a.fwd.get(req.GetId())
	if err != nil {
		return nil, err
	}
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	defer endOnDone(ctx, fc.conn.SetWriteDeadline)()
	if _, err := fc.conn.Write(req.GetData()); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return nil, fmt.Errorf("forwarded connection id %d: closed: %w", req.GetId(), errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("forwarded connection id %d: write: %w: %w", req.GetId(), err, errdefs.ErrUnavailable)
	}
	return &emptypb.Empty{}, nil
}

// ForwardClose implements PortForward.ForwardClose.
func (a *Agent) ForwardClose(ctx context.Context, req *pb.ForwardCloseRequest) (*emptypb.Empty, error) {
	f := &a.fwd
	if req.GetWriteOnly() {
		fc, err := f.get(req.GetId())
		if err != nil {
			return nil, err
		}
		if err := fc.conn.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			return nil, fmt.Errorf("forwarded connection id %d: close write: %w", req.GetId(), err)
		}
		return &emptypb.Empty{}, nil
	}
	f.mu.Lock()
	fc, ok := f.conns[req.GetId()]
	delete(f.conns, req.GetId())
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("forwarded connection id %d: %w", req.GetId(), errdefs.ErrNotFound)
	}
	fc.conn.Close()
	a.log.Debug("port forward: closed", "id", req.GetId())
	return &emptypb.Empty{}, nil
}
