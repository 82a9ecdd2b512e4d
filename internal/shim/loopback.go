package shim

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/procnet"
	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/vc"
)

// A container of its own without a network namespace (`ctr run`,
// containerd's shim conformance suite) has the host's network with runc:
// a port it listens on is the host's, at 127.0.0.1 too. In a VM it has
// the guest's network behind the NAT, so the shim shares the guest's
// loopback with the host's: each TCP port the guest listens on at
// localhost (127.0.0.1, ::1 or the wildcard address) is served on the
// host's 127.0.0.1 and each connection carried to the guest by the agent
// (portForward.carry); a port the host uses already is reported in the
// log. The agent holds a process's output written after it listened
// until the host serves the port (vc.Sandbox.ShareLoopback). With
// host_loopback, the other way too: the ports the host listens on at
// 127.0.0.1 are served on the guest's 127.0.0.1 and relayed to the
// host's. A CRI pod (a network namespace of its own) gets neither.

const (
	// loopbackWait is each ShareLoopback's wait for a change in the
	// guest; loopbackHostPoll with host_loopback, which also looks for
	// new listeners of the host's that often.
	loopbackWait     = 5 * time.Second
	loopbackHostPoll = 500 * time.Millisecond
	// loopbackRetry is the pause after a failed ShareLoopback.
	loopbackRetry = time.Second
)

// sharesLoopback tells whether a sandbox booted for c gets its loopback
// shared with the host's: a container of its own whose spec has no
// network namespace, with the NAT on.
func sharesLoopback(c *container, scfg vc.SandboxConfig) bool {
	if c.typ != annotations.SingleContainer || scfg.NetNS != "" || scfg.NAT.Disabled || c.spec.Linux == nil {
		return false
	}
	return !slices.ContainsFunc(c.spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.NetworkNamespace
	})
}

// loopbackShare is the host's side of a shared loopback.
type loopbackShare struct {
	*portForward
	cancel context.CancelFunc
	done   chan struct{}
	// Only the loop's goroutine (and close, after it) touches these.
	seen      uint64
	listeners map[int]*net.TCPListener // by port, on the host's 127.0.0.1
	taken     map[int]bool             // ports the host uses, reported
	refused   []string
}

// startLoopbackShare shares sb's loopback. Its first exchange with the
// agent is done when it returns, so that the guest serves the host's
// ports before the container starts.
func startLoopbackShare(sb *vc.Sandbox, log *slog.Logger) *loopbackShare {
	ctx, cancel := context.WithCancel(context.Background())
	l := &loopbackShare{
		portForward: newPortForward(sb, log.With("loopback", "shared")),
		cancel:      cancel, done: make(chan struct{}),
		listeners: map[int]*net.TCPListener{}, taken: map[int]bool{},
	}
	hostLoopback := sb.Status().Config.NAT.HostLoopback
	if err := l.exchange(ctx, 0, hostLoopback); err != nil {
		l.log.Warn("loopback not shared with the host's", "err", err)
	}
	go l.run(ctx, hostLoopback)
	return l
}

// run exchanges listeners with the agent until close.
func (l *loopbackShare) run(ctx context.Context, hostLoopback bool) {
	defer close(l.done)
	wait := loopbackWait
	if hostLoopback {
		wait = loopbackHostPoll
	}
	for ctx.Err() == nil {
		err := l.exchange(ctx, wait, hostLoopback)
		if err == nil {
			continue
		}
		if ctx.Err() != nil || errdefs.IsFailedPrecondition(err) || errdefs.IsNotImplemented(err) {
			// Closed, the sandbox stopped, or an agent without it.
			if ctx.Err() == nil {
				l.log.Warn("loopback not shared with the host's", "err", err)
			}
			return
		}
		l.log.Debug("share loopback", "err", err)
		select {
		case <-ctx.Done():
		case <-l.sb.Exited():
			return
		case <-time.After(loopbackRetry):
		}
	}
}

// exchange tells the agent the host's loopback ports (with host_loopback)
// and serves the guest's.
func (l *loopbackShare) exchange(ctx context.Context, wait time.Duration, hostLoopback bool) error {
	var host []procnet.Listener
	if hostLoopback {
		all, err := procnet.Listeners("/proc/self/net")
		if err != nil {
			l.log.Warn("share loopback: the host's listeners", "err", err)
		}
		for _, s := range all {
			if hostLoopbackPort(s, l.listeners) {
				host = append(host, s)
			}
		}
	}
	g, err := l.sb.ShareLoopback(ctx, l.seen, wait, host)
	if err != nil {
		return err
	}
	if !slices.Equal(g.Refused, l.refused) {
		l.refused = g.Refused
		if len(g.Refused) > 0 {
			l.log.Warn("share loopback: ports of the host's loopback not reachable at the guest's (the guest uses them)", "ports", g.Refused)
		}
	}
	if g.Generation != l.seen {
		l.serve(g.Listeners)
		l.seen = g.Generation
	}
	return nil
}

// hostLoopbackPort tells whether the host's listener s is served on the
// guest's 127.0.0.1: one the guest reaches at the host's 127.0.0.1 over
// IPv4 (not ::1 only), not the host's end of a guest port (own). A UDP
// socket only when bound to 127.0.0.1: unconnected sockets on the
// wildcard address are mostly clients' (passt's own among them), whose
// ports come and go.
func hostLoopbackPort(s procnet.Listener, own map[int]*net.TCPListener) bool {
	if s.Protocol == procnet.UDP {
		return s.Addr == netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	return s.Localhost() && s.Addr != netip.IPv6Loopback() && own[int(s.Port)] == nil
}

// serve makes the host's 127.0.0.1 listeners those of the guest's TCP
// ports.
func (l *loopbackShare) serve(ls []procnet.Listener) {
	want := map[int]bool{} // port: ipv6 (the guest listens on ::1 only)
	for _, s := range ls {
		if s.Protocol != procnet.TCP || !s.Localhost() {
			continue
		}
		p := int(s.Port)
		v6, seen := want[p]
		want[p] = s.Addr == netip.IPv6Loopback() && (!seen || v6)
	}
	for p, ln := range l.listeners {
		if _, ok := want[p]; !ok {
			ln.Close()
			delete(l.listeners, p)
			l.log.Debug("share loopback: guest port closed", "port", p)
		}
	}
	for p := range l.taken {
		if _, ok := want[p]; !ok {
			delete(l.taken, p)
		}
	}
	for p, v6 := range want {
		if l.listeners[p] != nil || l.taken[p] {
			continue
		}
		ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			l.taken[p] = true
			l.log.Warn("share loopback: the guest's port is not served on the host's 127.0.0.1", "port", p, "err", err)
			continue
		}
		l.listeners[p] = ln
		l.log.Debug("share loopback: guest port served", "addr", "127.0.0.1:"+strconv.Itoa(p))
		l.wg.Add(1)
		go l.accept(ln, func(*net.TCPConn) (int, bool, error) { return p, v6, nil })
	}
}

// close stops sharing: the host's listeners and their connections end.
func (l *loopbackShare) close() {
	if l == nil {
		return
	}
	l.cancel()
	<-l.done
	for _, ln := range l.listeners {
		ln.Close()
	}
	l.portForward.close()
}
