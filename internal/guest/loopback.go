package guest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/procnet"
	"github.com/virtcontainers/vc/internal/relay"
)

// PortForward.ShareLoopback (portforward.proto): the guest's listeners
// for the host, which serves them on its own loopback, and the host's
// loopback ports on the guest's.

const (
	// loopbackPoll is how often a waiting ShareLoopback looks for new
	// listeners: the detection latency of a listener whose process
	// writes no output after it listens.
	loopbackPoll = 100 * time.Millisecond
	// maxLoopbackWait bounds a ShareLoopback's wait.
	maxLoopbackWait = 10 * time.Second
	// loopbackWatched is how long after a ShareLoopback the host counts
	// as sharing (and output waits for it).
	loopbackWatched = maxLoopbackWait + 5*time.Second
	// loopbackHold bounds how long output waits for the host to serve a
	// new listener.
	loopbackHold = 3 * time.Second
	// udpRelayIdle ends a relayed UDP flow without traffic.
	udpRelayIdle = 2 * time.Minute
	procNet      = "/proc/self/net"
)

// loopbackState is the agent's side of ShareLoopback.
type loopbackState struct {
	mu        sync.Mutex
	gen       uint64             // the listener set's generation; guarded by mu
	acked     uint64             // the last generation the host served
	listeners []procnet.Listener // guarded by mu
	lastCall  time.Time          // the host's last ShareLoopback
	changed   chan struct{}      // closed on a new generation or ack
	mirrors   map[string]*mirror // host ports on the guest's loopback, by tcp/PORT
	host      string             // where the mirrors relay to
}

// mirror is a host loopback port served on the guest's 127.0.0.1.
type mirror struct {
	close func()
}

func (l *loopbackState) notifyLocked() {
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
}

// scanLocked reads the guest's loopback listeners (but the mirrors) and
// starts a generation when they changed.
func (l *loopbackState) scanLocked(log interface{ Warn(string, ...any) }) {
	all, err := procnet.Listeners(procNet)
	if err != nil {
		log.Warn("share loopback: listeners", "err", err)
		return
	}
	ls := l.shared(all)
	if l.gen > 0 && slices.Equal(ls, l.listeners) {
		return
	}
	l.listeners = ls
	l.gen++
	l.notifyLocked()
}

// shared are the listeners of all the host is told of: on localhost, not
// a mirror, and of protocol when one is given.
func (l *loopbackState) shared(all []procnet.Listener, protocol ...string) []procnet.Listener {
	var ls []procnet.Listener
	for _, s := range all {
		if s.Localhost() && l.mirrors[s.Protocol+"/"+strconv.Itoa(int(s.Port))] == nil && (len(protocol) == 0 || s.Protocol == protocol[0]) {
			ls = append(ls, s)
		}
	}
	return ls
}

// closeMirrors ends the mirrors (shutdown).
func (l *loopbackState) closeMirrors() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, m := range l.mirrors {
		m.close()
		delete(l.mirrors, k)
	}
}

// holdForListeners makes output wait until the host serves the listeners the guest
// has now, when the host shares the loopback: a client the output tells
// of a port finds it open on the host.
func (a *Agent) holdForListeners(ctx context.Context) {
	l := &a.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastCall.IsZero() || time.Since(l.lastCall) > loopbackWatched {
		return
	}
	// The host serves TCP ports only: read the TCP tables (each read
	// costs, and output comes in many chunks), all of them on a change.
	if tcp, err := procnet.TCPListeners(procNet); err != nil || !slices.Equal(l.shared(tcp), l.shared(l.listeners, procnet.TCP)) {
		l.scanLocked(a.log)
	}
	if l.acked >= l.gen {
		return
	}
	start := time.Now()
	timer := time.NewTimer(loopbackHold)
	defer timer.Stop()
	for l.acked < l.gen {
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			a.log.Warn("share loopback: the host did not serve the new listeners in time; output goes on", "after", loopbackHold)
			l.mu.Lock()
			return
		case <-ctx.Done():
			l.mu.Lock()
			return
		}
		l.mu.Lock()
	}
	a.log.Debug("share loopback: output held for new listeners", "took", time.Since(start))
}

// ShareLoopback implements PortForward.ShareLoopback.
func (a *Agent) ShareLoopback(ctx context.Context, req *pb.ShareLoopbackRequest) (*pb.ShareLoopbackResponse, error) {
	var host netip.Addr
	if len(req.GetHostTcp())+len(req.GetHostUdp()) > 0 {
		var err error
		if host, err = netip.ParseAddr(req.GetHost()); err != nil || !host.Is4() {
			return nil, invalid("host", "%q: want the IPv4 address the host's loopback is reached at", req.GetHost())
		}
	}
	for _, p := range append(slices.Clone(req.GetHostTcp()), req.GetHostUdp()...) {
		if p == 0 || p > 65535 {
			return nil, invalid("host_tcp, host_udp", "%d is not a port", p)
		}
	}
	wait := min(time.Duration(req.GetWaitMs())*time.Millisecond, maxLoopbackWait)
	l := &a.loop
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastCall = time.Now()
	if req.GetSeen() > l.acked {
		l.acked = req.GetSeen()
		l.notifyLocked()
	}
	refused := a.mirrorLocked(host, req.GetHostTcp(), req.GetHostUdp())
	l.scanLocked(a.log)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(loopbackPoll)
	defer poll.Stop()
wait:
	for l.gen <= req.GetSeen() {
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-poll.C:
		case <-deadline.C:
			l.mu.Lock()
			break wait
		case <-ctx.Done():
			l.mu.Lock()
			return nil, ctx.Err()
		}
		l.mu.Lock()
		l.lastCall = time.Now()
		l.scanLocked(a.log)
	}
	resp := &pb.ShareLoopbackResponse{Generation: l.gen, Refused: refused}
	for _, s := range l.listeners {
		resp.Listeners = append(resp.Listeners, &pb.Listener{Protocol: s.Protocol, Address: s.Addr.String(), Port: uint32(s.Port)})
	}
	return resp, nil
}

// mirrorLocked makes the mirrors those of the host ports given, relaying
// to host; it returns the ports it could not take.
func (a *Agent) mirrorLocked(host netip.Addr, tcp, udp []uint32) []string {
	l := &a.loop
	want := map[string]bool{}
	for _, p := range tcp {
		want[procnet.TCP+"/"+strconv.Itoa(int(p))] = true
	}
	for _, p := range udp {
		want[procnet.UDP+"/"+strconv.Itoa(int(p))] = true
	}
	// Relaying elsewhere now: start again.
	moved := host.String() != l.host
	for k, m := range l.mirrors {
		if moved || !want[k] {
			m.close()
			delete(l.mirrors, k)
		}
	}
	if len(tcp)+len(udp) == 0 {
		return nil
	}
	l.host = host.String()
	if l.mirrors == nil {
		l.mirrors = map[string]*mirror{}
	}
	var refused []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if l.mirrors[k] != nil {
			continue
		}
		proto, port, _ := strings.Cut(k, "/")
		m, err := a.startMirror(proto, port, l.host)
		if err != nil {
			a.log.Debug("share loopback: host port not served in the guest", "port", k, "err", err)
			refused = append(refused, k)
			continue
		}
		l.mirrors[k] = m
	}
	return refused
}

// startMirror listens on the guest's 127.0.0.1:port and relays to the
// same port at host.
func (a *Agent) startMirror(proto, port, host string) (*mirror, error) {
	laddr := net.JoinHostPort("127.0.0.1", port)
	raddr := net.JoinHostPort(host, port)
	if proto == procnet.TCP {
		ln, err := net.Listen("tcp4", laddr)
		if err != nil {
			return nil, err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					h, err := net.DialTimeout("tcp4", raddr, forwardDialTimeout)
					if err != nil {
						a.log.Debug("share loopback: host port", "addr", raddr, "err", err)
						c.(*net.TCPConn).SetLinger(0)
						c.Close()
						return
					}
					relay.Pipe(c.(*net.TCPConn), h.(*net.TCPConn))
				}()
			}
		}()
		return &mirror{close: func() { ln.Close() }}, nil
	}
	pc, err := net.ListenPacket("udp4", laddr)
	if err != nil {
		return nil, err
	}
	r := &udpRelay{pc: pc, raddr: raddr, flows: map[string]net.Conn{}}
	go r.serve()
	return &mirror{close: r.close}, nil
}

// udpRelay relays the datagrams of each guest source address through a
// socket of its own connected to the host's port, and the replies back.
type udpRelay struct {
	pc    net.PacketConn
	raddr string
	mu    sync.Mutex
	flows map[string]net.Conn // by source address; nil once closed
}

func (r *udpRelay) close() {
	r.pc.Close()
	r.mu.Lock()
	flows := r.flows
	r.flows = nil
	r.mu.Unlock()
	for _, c := range flows {
		c.Close()
	}
}

func (r *udpRelay) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, src, err := r.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c, err := r.flow(src)
		if err != nil {
			continue
		}
		c.SetDeadline(time.Now().Add(udpRelayIdle))
		c.Write(buf[:n])
	}
}

// flow returns src's connected socket, made on its first datagram.
func (r *udpRelay) flow(src net.Addr) (net.Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.flows == nil {
		return nil, net.ErrClosed
	}
	if c := r.flows[src.String()]; c != nil {
		return c, nil
	}
	c, err := net.Dial("udp4", r.raddr)
	if err != nil {
		return nil, fmt.Errorf("udp %s: %w", r.raddr, err)
	}
	r.flows[src.String()] = c
	go func() {
		defer func() {
			r.mu.Lock()
			if r.flows != nil && r.flows[src.String()] == c {
				delete(r.flows, src.String())
			}
			r.mu.Unlock()
			c.Close()
		}()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(udpRelayIdle))
			r.pc.WriteTo(buf[:n], src)
		}
	}()
	return c, nil
}
