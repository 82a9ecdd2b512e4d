package vc

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/relay"
)

// Socket proxies: a unix socket of the host bind-mounted into a container
// (docker's -v /run/x.sock:/run/x.sock, a hostPath socket). 9p cannot
// carry one, so the agent listens on a socket of its own that the
// container's spec bind-mounts at the destination, and the host pulls
// each connection made to it (PortForward.SocketProxyAccept, a long poll:
// the guest cannot dial the host) and relays it to the host's socket. The
// host dials only the source of the container's own mount: the guest
// never names a host path.

const (
	// sockProxyWait is each SocketProxyAccept's long poll.
	sockProxyWait = 10 * time.Second
	// sockProxyRetry spaces the polls after an error of the agent.
	sockProxyRetry = time.Second
)

// sockProxies are a sandbox's running socket proxies, by container.
type sockProxies struct {
	mu sync.Mutex
	by map[string]*sockProxySet // guarded by mu
}

// sockProxySet is one container's proxies: their accept loops and the
// connections they relay.
type sockProxySet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[*PortConn]*net.UnixConn // guarded by mu
}

// proxySockets gives each bind mount of spec whose source is still a
// host path (shareContainer leaves only sockets so) a socket proxy: the
// agent listens, the mount's source becomes the agent's socket, and the
// host relays each connection to the mount's source. The returned stop
// undoes it.
func (s *Sandbox) proxySockets(ctx context.Context, cid string, spec *specs.Spec) (stop func(), err error) {
	var idx []int
	for i, m := range spec.Mounts {
		if isBind(m) && !strings.HasPrefix(m.Source, guestSharedDir+"/") && !strings.HasPrefix(m.Source, guestWatchedDir+"/") {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return func() {}, nil
	}
	s.mu.Lock()
	client := s.client
	s.mu.Unlock()
	pf := pb.NewPortForwardClient(client)
	set := &sockProxySet{conns: map[*PortConn]*net.UnixConn{}}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	set.cancel = cancel
	stop = func() {
		cancel()
		// The agent's close ends its pending accepts; the host's calls
		// end with lctx.
		cctx, ccancel := context.WithTimeout(context.Background(), portCloseTimeout)
		pf.SocketProxyClose(cctx, &pb.SocketProxyCloseRequest{ContainerId: cid})
		ccancel()
		set.closeConns()
		set.wg.Wait()
	}
	defer func() {
		if err != nil {
			stop()
			stop = nil
		}
	}()
	for _, i := range idx {
		m := &spec.Mounts[i]
		st, err := os.Stat(m.Source)
		if err != nil {
			return stop, fmt.Errorf("mounts[%d].source %q (destination %s): %w: %w", i, m.Source, m.Destination, err, errdefs.ErrInvalidArgument)
		}
		if st.Mode().Type() != fs.ModeSocket {
			return stop, fmt.Errorf("mounts[%d].source %q (destination %s): not shared and not a unix socket: %w", i, m.Source, m.Destination, errdefs.ErrInvalidArgument)
		}
		req := &pb.SocketProxyListenRequest{ContainerId: cid, Index: uint32(i), Mode: uint32(st.Mode().Perm())}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			req.Uid, req.Gid = sys.Uid, sys.Gid
		}
		resp, err := pf.SocketProxyListen(ctx, req)
		if err != nil {
			if errdefs.IsNotImplemented(err) {
				// Not Unimplemented itself: containerd retries a task
				// Create that answers it with an older shim API.
				return stop, fmt.Errorf("mounts[%d].source %q (destination %s) is a unix socket: the guest's agent has no socket proxy (PortForward.SocketProxyListen: %v); update the agent: %w", i, m.Source, m.Destination, err, errdefs.ErrFailedPrecondition)
			}
			return stop, fmt.Errorf("mounts[%d].source %q (destination %s): socket proxy: %w", i, m.Source, m.Destination, err)
		}
		host := m.Source
		m.Source = resp.GetPath()
		set.wg.Add(1)
		go s.acceptSockets(lctx, pf, set, cid, uint32(i), host)
	}
	s.sockp.mu.Lock()
	if s.sockp.by == nil {
		s.sockp.by = map[string]*sockProxySet{}
	}
	s.sockp.by[cid] = set
	s.sockp.mu.Unlock()
	return func() {
		s.sockp.mu.Lock()
		delete(s.sockp.by, cid)
		s.sockp.mu.Unlock()
		stop()
	}, nil
}

// stopSockProxies ends a container's proxies, if this process runs them
// (the agent closes its listeners at RemoveContainer in any case). s.mu
// must not be held: the relays' ends call the agent.
func (s *Sandbox) stopSockProxies(cid string) {
	s.sockp.mu.Lock()
	set := s.sockp.by[cid]
	delete(s.sockp.by, cid)
	s.sockp.mu.Unlock()
	if set == nil {
		return
	}
	set.cancel()
	set.closeConns()
	set.wg.Wait()
}

func (set *sockProxySet) closeConns() {
	set.mu.Lock()
	conns := set.conns
	set.conns = map[*PortConn]*net.UnixConn{}
	set.mu.Unlock()
	for pc, hc := range conns {
		hc.Close()
		pc.Close()
	}
}

// acceptSockets relays each connection the guest accepts on proxy index
// of container cid to the host's socket at host, until ctx ends or the
// agent forgets the proxy.
func (s *Sandbox) acceptSockets(ctx context.Context, pf pb.PortForwardService, set *sockProxySet, cid string, index uint32, host string) {
	defer set.wg.Done()
	log := s.log.With("container", cid, "socket", host)
	for ctx.Err() == nil {
		resp, err := pf.SocketProxyAccept(ctx, &pb.SocketProxyAcceptRequest{ContainerId: cid, Index: index, WaitMs: uint32(sockProxyWait.Milliseconds())})
		if err != nil {
			// Gone: the proxy (the container was removed), the
			// agent's connection (the VM).
			if ctx.Err() != nil || errdefs.IsNotFound(err) || connectionLost(err) {
				return
			}
			log.Warn("socket proxy: accept", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(sockProxyRetry):
			}
			continue
		}
		if resp.GetId() == 0 {
			continue
		}
		pc := &PortConn{agent: pf, id: resp.GetId(), Address: "socket proxy of " + host}
		pc.ctx, pc.cancel = context.WithCancel(context.Background())
		hc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: host, Net: "unix"})
		if err != nil {
			// The container's client sees its connection closed, as a
			// socket nothing accepts on would refuse it.
			log.Warn("socket proxy: dial the host's socket", "err", err)
			pc.Close()
			continue
		}
		set.mu.Lock()
		if ctx.Err() != nil {
			set.mu.Unlock()
			hc.Close()
			pc.Close()
			return
		}
		set.conns[pc] = hc
		set.mu.Unlock()
		set.wg.Add(1)
		go func() {
			defer set.wg.Done()
			if err := relay.Pipe(pc, hc); err != nil && ctx.Err() == nil {
				log.Debug("socket proxy: relay", "err", err)
			}
			set.mu.Lock()
			delete(set.conns, pc)
			set.mu.Unlock()
		}()
	}
}
