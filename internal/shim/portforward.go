package shim

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/virtcontainers/vc/internal/relay"
	"github.com/virtcontainers/vc/pkg/network"
	"github.com/virtcontainers/vc/pkg/vc"
)

// kubectl port-forward: containerd's CRI dials localhost:PORT in the pod's
// network namespace on the host (127.0.0.1, then ::1), where nothing
// listens: the pod's servers are in the guest, which owns the pod's
// address. The shim redirects TCP to the loopback of that namespace to
// listeners of its own there (network.LoopbackRedirect) and carries each
// connection to the same port of the guest's loopback through the agent
// (Sandbox.DialPort). A server in the guest that listens only on
// 127.0.0.1 is reached too, as with runc.

// portForwardDialTimeout bounds the agent's dial of the guest port.
const portForwardDialTimeout = 30 * time.Second

// portForward is a pod's redirect (or the listeners of a shared
// loopback, loopback.go) and its connections.
type portForward struct {
	sb       *vc.Sandbox
	redirect *network.LoopbackRedirect // nil for a shared loopback
	log      *slog.Logger

	mu     sync.Mutex
	conns  map[io.Closer]struct{} // guarded by mu; host and guest ends
	closed bool                   // guarded by mu
	wg     sync.WaitGroup
}

// startPortForward sets up port forwarding into sb from the network
// namespace at nsPath. It returns nil (and says why) when that cannot be
// done: the pod runs anyway, only port-forward fails.
func startPortForward(sb *vc.Sandbox, nsPath string, log *slog.Logger) *portForward {
	if nsPath == "" {
		return nil
	}
	r, err := network.RedirectLoopback(nsPath)
	if err != nil {
		log.Warn("port forwarding not available for the pod", "netns", nsPath, "err", err)
		return nil
	}
	p := newPortForward(sb, log)
	p.redirect = r
	for _, l := range r.Listeners {
		p.wg.Add(1)
		go p.accept(l, originalPort)
	}
	log.Debug("port forwarding ready", "netns", nsPath)
	return p
}

func newPortForward(sb *vc.Sandbox, log *slog.Logger) *portForward {
	return &portForward{sb: sb, log: log, conns: map[io.Closer]struct{}{}}
}

// close removes the redirect and ends every forwarded connection.
func (p *portForward) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	if p.redirect != nil {
		if err := p.redirect.Close(); err != nil {
			p.log.Warn("port forwarding: remove the redirect", "netns", p.redirect.NSPath, "err", err)
		}
	}
	for c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// track records c for close; false when closing already.
func (p *portForward) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *portForward) untrack(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// accept serves l's connections; dst names the guest port each goes to.
func (p *portForward) accept(l *net.TCPListener, dst func(*net.TCPConn) (port int, ipv6 bool, err error)) {
	defer p.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("port forwarding: accept", "err", err)
			}
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			defer c.Close()
			port, ipv6, err := dst(c)
			if err != nil {
				p.log.Warn("port forwarding", "err", err)
				return
			}
			p.carry(c, port, ipv6)
		}()
	}
}

// originalPort is the port a redirected connection was made to.
func originalPort(c *net.TCPConn) (int, bool, error) {
	dst, err := network.OriginalDestination(c)
	if err != nil {
		return 0, false, err
	}
	return int(dst.Port()), dst.Addr().Is6(), nil
}

// carry carries c to port of the guest's loopback.
func (p *portForward) carry(c *net.TCPConn, port int, ipv6 bool) {
	log := p.log.With("port", port)
	ctx, cancel := context.WithTimeout(context.Background(), portForwardDialTimeout)
	g, err := p.sb.DialPort(ctx, port, ipv6)
	cancel()
	if err != nil {
		// Reset, not a clean end: the client's dial succeeded (the
		// host's listener answered), but nothing is there.
		log.Info("port forwarding: guest port", "err", err)
		c.SetLinger(0)
		return
	}
	if !p.track(g) {
		g.Close()
		return
	}
	defer p.untrack(g)
	log.Debug("port forwarding: connected", "guest", g.Address)
	// Both directions end on their own (each side closed its write side)
	// or the first error ends both.
	if err := relay.Pipe(c, g); err != nil {
		log.Debug("port forwarding: connection ended", "err", err)
	}
}

// removeLeftPortForward removes the redirect that a shim that died left in
// its sandbox's network namespace (shim delete).
func removeLeftPortForward(log *slog.Logger, sb *vc.Sandbox) {
	if err := network.RemoveLoopbackRedirect(sb.Status().Config.NetNS); err != nil {
		log.Warn("shim delete: remove the port forwarding redirect", "err", err)
	}
}
