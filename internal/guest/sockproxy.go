package guest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// Socket proxies (portforward.proto): a listening unix socket per host
// socket bind-mounted into a container; the host pulls each connection
// made to it (SocketProxyAccept) and relays it to its own socket as a
// forwarded connection.

const (
	// maxSockProxies bounds the listeners of all containers.
	maxSockProxies = 256
	// maxSockProxyWait bounds a SocketProxyAccept's wait.
	maxSockProxyWait = 30 * time.Second
)

// sockProxyState is the agent's socket proxies.
type sockProxyState struct {
	mu sync.Mutex
	ls map[sockProxyKey]*net.UnixListener // guarded by mu
}

type sockProxyKey struct {
	cid   string
	index uint32
}

// sockProxyDir is where the listeners are: beside the containers' state,
// never inside a container's rootfs (the container's spec bind-mounts a
// listener at its destination).
func (a *Agent) sockProxyDir(cid string) string {
	return filepath.Join(filepath.Dir(a.cfg.ContainerRoot), "sockproxy", cid)
}

// SocketProxyListen implements PortForward.SocketProxyListen.
func (a *Agent) SocketProxyListen(ctx context.Context, req *pb.SocketProxyListenRequest) (*pb.SocketProxyListenResponse, error) {
	cid := req.GetContainerId()
	if err := checkContainerID(cid); err != nil {
		return nil, err
	}
	if req.GetMode() > 0o777 {
		return nil, invalid("mode", "%#o is not permission bits", req.GetMode())
	}
	p := &a.sockp
	key := sockProxyKey{cid, req.GetIndex()}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ls[key] != nil {
		return nil, fmt.Errorf("socket proxy %s/%d: %w", cid, key.index, errdefs.ErrAlreadyExists)
	}
	if len(p.ls) >= maxSockProxies {
		return nil, fmt.Errorf("socket proxy %s/%d: %d open already: %w", cid, key.index, len(p.ls), errdefs.ErrResourceExhausted)
	}
	dir := a.sockProxyDir(cid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("socket proxy %s/%d: %w", cid, key.index, err)
	}
	path := filepath.Join(dir, strconv.FormatUint(uint64(key.index), 10)+".sock")
	os.Remove(path) // a stale one of a failed attempt
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("socket proxy %s/%d: %w", cid, key.index, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, os.FileMode(req.GetMode())); err == nil {
		err = os.Lchown(path, int(req.GetUid()), int(req.GetGid()))
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("socket proxy %s/%d: %w", cid, key.index, err)
	}
	if p.ls == nil {
		p.ls = map[sockProxyKey]*net.UnixListener{}
	}
	p.ls[key] = ln
	a.log.Debug("socket proxy: listening", "container", cid, "index", key.index, "path", path)
	return &pb.SocketProxyListenResponse{Path: path}, nil
}

// SocketProxyAccept implements PortForward.SocketProxyAccept.
func (a *Agent) SocketProxyAccept(ctx context.Context, req *pb.SocketProxyAcceptRequest) (*pb.SocketProxyAcceptResponse, error) {
	p := &a.sockp
	key := sockProxyKey{req.GetContainerId(), req.GetIndex()}
	p.mu.Lock()
	ln := p.ls[key]
	p.mu.Unlock()
	if ln == nil {
		return nil, fmt.Errorf("socket proxy %s/%d: %w", key.cid, key.index, errdefs.ErrNotFound)
	}
	wait := min(time.Duration(req.GetWaitMs())*time.Millisecond, maxSockProxyWait)
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	defer endOnDone(ctx, ln.SetDeadline)()
	c, err := ln.AcceptUnix()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &pb.SocketProxyAcceptResponse{}, nil
	case errors.Is(err, net.ErrClosed):
		return nil, fmt.Errorf("socket proxy %s/%d: closed: %w", key.cid, key.index, errdefs.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("socket proxy %s/%d: accept: %w: %w", key.cid, key.index, err, errdefs.ErrUnavailable)
	}
	id, err := a.fwd.add(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("socket proxy %s/%d: %w", key.cid, key.index, err)
	}
	a.log.Debug("socket proxy: connection", "container", key.cid, "index", key.index, "id", id)
	return &pb.SocketProxyAcceptResponse{Id: id}, nil
}

// SocketProxyClose implements PortForward.SocketProxyClose.
func (a *Agent) SocketProxyClose(ctx context.Context, req *pb.SocketProxyCloseRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	a.closeSockProxies(req.GetContainerId())
	return &emptypb.Empty{}, nil
}

// closeSockProxies closes a container's listeners (all with cid "") and
// removes their directory. Connections already accepted are the host's
// to close.
func (a *Agent) closeSockProxies(cid string) {
	p := &a.sockp
	p.mu.Lock()
	var dirs []string
	for k, ln := range p.ls {
		if cid == "" || k.cid == cid {
			ln.Close()
			delete(p.ls, k)
			dirs = append(dirs, a.sockProxyDir(k.cid))
		}
	}
	p.mu.Unlock()
	if cid != "" {
		dirs = append(dirs, a.sockProxyDir(cid))
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}
