package factory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
)

// A factory's cache is a process (ServeCache: `vc factory cache`)
// that keeps VMs of the factory's template started and their agents
// answering, and hands one out to each sandbox that fits the template
// (CreateSandbox with the factory as its VMSource): the sandbox then skips
// QEMU's start and the restore as well as the boot. It serves on
// <factory>/cache.sock (root only); a sandbox finding no cache there, or
// none ready, starts from the template itself.
//
// A cached VM lives in <factory>/cache/<vm id>/ (vm/: QEMU's sockets and
// logs; shared/: the 9p export), made when the VM starts, since QEMU opens
// them then. Handed out, the directory becomes the sandbox's (its
// SandboxStatus.VMDir): its containers' files are shared through it, and
// the sandbox's Delete removes it. A file "taken" in it names the
// sandbox and its owner.
//
// A VM of the cache is the cache process's child, not tied to it: taken
// VMs run on when the cache stops. While the cache runs it kills a taken
// VM whose owner (the process that took it) has exited, as a VM a sandbox
// started itself dies with it; when it was not running, the sandbox's
// next look finds the owner gone and stops the VM (Sandbox.refresh).
// Stopping, the cache stops the VMs nobody took; one killed with SIGKILL
// leaves them, and the next cache (or Destroy) kills them.

// Files of a factory's cache.
const (
	cacheSocketName = "cache.sock"
	cacheLockName   = "cache.lock"
	cacheDirName    = "cache"
	cacheTakenName  = "taken"
)

// cacheTakeTimeout bounds a sandbox's exchange with the cache: a cache
// slower than that is not worth waiting for.
const cacheTakeTimeout = 2 * time.Second

// CacheStatus is what a running cache reports.
type CacheStatus struct {
	Pid int `json:"pid"`
	// Size is how many VMs the cache keeps ready.
	Size int `json:"size"`
	// Ready VMs wait to be taken; Starting is being started.
	Ready    int `json:"ready"`
	Starting int `json:"starting"`
	// Taken is how many VMs were handed out since the cache started, and
	// Running how many of those still run.
	Taken   int `json:"taken"`
	Running int `json:"running"`
	// LastError is the last failure to start a VM, if the latest start
	// failed.
	LastError string `json:"last_error,omitempty"`
}

type cacheRequest struct {
	// Op is take, status or stop.
	Op      string `json:"op"`
	Sandbox string `json:"sandbox,omitempty"`
}

type cacheReply struct {
	Error  string       `json:"error,omitempty"`
	VMDir  string       `json:"vm_dir,omitempty"`
	Status *CacheStatus `json:"status,omitempty"`
}

// cachedVM is a VM of the cache.
type cachedVM struct {
	id  string
	dir string // <factory>/cache/<id>
	vm  hypervisor.Hypervisor
}

type factoryCache struct {
	dir  string // the factory's
	size int
	log  *slog.Logger
	stop context.CancelFunc

	// noWarm: warming a VM failed once; the next ones are not warmed.
	noWarm atomic.Bool

	mu        sync.Mutex
	ready     []*cachedVM
	starting  int
	taken     int
	running   map[*cachedVM]bool
	lastError string
	wake      chan struct{}
}

// ServeCache keeps size VMs of the template in dir started, and
// hands them to sandboxes, until ctx is done or a client asks it to stop
// (StopCache); it then stops the VMs nobody took and removes its
// socket. One cache serves a factory at a time (errdefs.ErrAlreadyExists
// otherwise). A VM that fails to start is retried, later and later; the
// cache reports the failure (QueryCache) and does not stop.
func ServeCache(ctx context.Context, dir string, size int) error {
	dir = filepath.Clean(dir)
	if size < 1 || size > 64 {
		return fmt.Errorf("cache size %d: want 1 to 64: %w", size, errdefs.ErrInvalidArgument)
	}
	f, err := Open(dir)
	if err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, cacheLockName), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("factory %s: cache: %w", dir, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fmt.Errorf("factory %s: a cache already serves it: %w", dir, errdefs.ErrAlreadyExists)
	}
	vms := filepath.Join(dir, cacheDirName)
	if err := os.MkdirAll(vms, 0o700); err != nil {
		return fmt.Errorf("factory %s: cache: %w", dir, err)
	}
	reclaimCache(f.manifest.backend(), vms)
	sock := filepath.Join(dir, cacheSocketName)
	os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("factory %s: cache socket: %w", dir, err)
	}
	defer os.Remove(sock)
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("factory %s: cache socket: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &factoryCache{
		dir:     dir,
		size:    size,
		log:     slog.Default().With("factory", dir, "cache", size),
		stop:    cancel,
		running: map[*cachedVM]bool{},
		wake:    make(chan struct{}, 1),
	}
	c.log.Info("cache serving", "socket", sock, "template", f.manifest.Created)
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		c.fill(ctx)
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			break
		}
		go c.serve(conn.(*net.UnixConn))
	}
	<-filled
	c.mu.Lock()
	ready := c.ready
	c.ready = nil
	c.mu.Unlock()
	for _, v := range ready {
		killVM(v.vm)
		removeVMDir(v.dir)
	}
	c.log.Info("cache stopped", "stopped", len(ready))
	return nil
}

// fill starts VMs until size are ready, one at a time (each start is a
// CPU's work for a while), backing off after failures.
func (c *factoryCache) fill(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		c.mu.Lock()
		need := len(c.ready)+c.starting < c.size
		if need {
			c.starting++
		}
		c.mu.Unlock()
		if !need {
			select {
			case <-ctx.Done():
			case <-c.wake:
			case <-time.After(cachePruneInterval):
				c.pruneDead()
			}
			continue
		}
		v, err := c.readyVM(ctx)
		c.mu.Lock()
		c.starting--
		if err == nil {
			c.ready = append(c.ready, v)
			c.lastError = ""
		} else if ctx.Err() == nil {
			c.lastError = err.Error()
		}
		c.mu.Unlock()
		if err == nil {
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Error("cache: start a vm", "err", err, "retry in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// cachePruneInterval is how often the cache looks for ready VMs that
// died (killed, out of memory) to start others.
const cachePruneInterval = 5 * time.Second

// pruneDead forgets the ready VMs that died, and removes their
// directories.
func (c *factoryCache) pruneDead() {
	c.mu.Lock()
	var dead []*cachedVM
	alive := c.ready[:0]
	for _, v := range c.ready {
		select {
		case <-v.vm.Exited():
			dead = append(dead, v)
		default:
			alive = append(alive, v)
		}
	}
	c.ready = alive
	c.mu.Unlock()
	for _, v := range dead {
		c.log.Warn("cache: a ready vm died", "vm", v.id, "err", v.vm.Info().ExitError)
		killVM(v.vm) // its sockets and files
		removeVMDir(v.dir)
	}
}

// readyVM starts a VM of the template through vc.StartVM (the template
// checked again: it may have been made again or damaged since), waits for
// its agent and, under TCG, warms it.
func (c *factoryCache) readyVM(ctx context.Context) (_ *cachedVM, err error) {
	f, err := Open(c.dir)
	if err != nil {
		return nil, err
	}
	m := f.manifest
	b := make([]byte, 6)
	rand.Read(b)
	v := &cachedVM{id: "cache-" + hex.EncodeToString(b)}
	v.dir = filepath.Join(c.dir, cacheDirName, v.id)
	if err := os.MkdirAll(v.dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			removeVMDir(v.dir)
		}
	}()
	log := c.log.With("vm", v.id)
	vm, err := vc.StartVM(ctx, vc.VMSpec{
		Config: vc.SandboxConfig{
			ID: v.id,
			Hypervisor: vc.HypervisorConfig{
				Backend: m.Backend, Path: m.QEMU.Path, Kernel: m.Kernel.Path, Initrd: m.Initrd.Path,
				CPUs: m.CPUs, MemoryMiB: m.MemoryMiB, KernelParams: m.KernelParams, Debug: m.Debug,
			},
			NAT: vc.NATConfig{Disabled: !m.NAT},
		},
		Dir: v.dir,
		Configure: func(hc *hypervisor.Config) {
			f.restoreConfig(hc)
			// Not tied to this process: a sandbox takes it over.
			hc.DieWithParent = false
		},
		Log: log,
	})
	if err != nil {
		return nil, err
	}
	client, _, err := vc.DialAgent(ctx, vm)
	if err != nil {
		killVM(vm)
		return nil, err
	}
	if vm.Capabilities().Accel == hypervisor.AccelTCG && !c.noWarm.Load() {
		begin := time.Now()
		if err := warmVM(ctx, pb.NewAgentServiceClient(client)); err != nil {
			// The guest's state is unknown: this VM goes, and the
			// next ones are not warmed.
			c.noWarm.Store(true)
			client.Close()
			killVM(vm)
			return nil, fmt.Errorf("warm the vm (no more warming for this cache): %w", err)
		}
		log.Info("cache: vm warmed", "took", time.Since(begin).Round(time.Millisecond))
	}
	client.Close()
	v.vm = vm
	log.Info("cache: vm ready", "pid", vm.Info().Pid)
	return v, nil
}

// warmContainerID names the container warmVM runs, warmRoot its root in
// the guest.
const (
	warmContainerID = "vc-cache-warm"
	warmRoot        = "/run/vc-cache-warm"
)

// warmVM creates, starts, kills and removes a container in a cached VM
// under TCG, where a restored VM has translated none of the code a
// container's creation runs (runc's init, the agent's and the kernel's
// paths): the sandbox that takes the VM then creates its first container
// about as fast as its next ones. The container runs the agent's own
// binary (/init) in its pause mode, in namespaces of its own: it leaves
// nothing once removed.
func warmVM(ctx context.Context, a pb.AgentServiceService) (err error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Its root is a tmpfs (a storage the container's removal unmounts)
	// holding only the agent's binary, bound read-only.
	spec := oci.DefaultSpec([]string{"/init", "pause"}, nil, "/", false)
	spec.Root = &specs.Root{Path: warmRoot}
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/init", Type: "bind", Source: "/init", Options: []string{"bind", "ro"}})
	storages := []*pb.Storage{{Driver: "ephemeral", Source: "tmpfs", Fstype: "tmpfs", MountPoint: warmRoot}}
	id := warmContainerID
	if _, err := a.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: oci.ToProto(spec), Storages: storages}); err != nil {
		return fmt.Errorf("agent CreateContainer: %w", err)
	}
	defer func() {
		if _, rerr := a.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id, Timeout: 5}); rerr != nil && err == nil {
			err = fmt.Errorf("agent RemoveContainer: %w", rerr)
		}
	}()
	if _, err := a.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("agent StartContainer: %w", err)
	}
	if _, err := a.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: id, ExecId: id, Signal: uint32(unix.SIGKILL)}); err != nil {
		return fmt.Errorf("agent SignalProcess: %w", err)
	}
	if _, err := a.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: id, ExecId: id}); err != nil {
		return fmt.Errorf("agent WaitProcess: %w", err)
	}
	return nil
}

// serve answers one request of a connection.
// maxCacheRequest bounds what the cache reads of a request: a peer
// cannot make it buffer more. A request is one JSON value; what follows
// it is not read.
const maxCacheRequest = 4096

func (c *factoryCache) serve(conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(cacheTakeTimeout))
	var req cacheRequest
	if err := json.NewDecoder(io.LimitReader(conn, maxCacheRequest)).Decode(&req); err != nil {
		return
	}
	var rep cacheReply
	var taken *cachedVM
	switch req.Op {
	case "status":
		st := c.status()
		rep.Status = &st
	case "stop":
		c.stop()
	case "take":
		v, err := c.take(conn, req.Sandbox)
		if err != nil {
			rep.Error = err.Error()
		} else {
			rep.VMDir = v.dir
			taken = v
		}
	default:
		rep.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	if err := json.NewEncoder(conn).Encode(rep); err != nil && taken != nil {
		// The sandbox gave up waiting (it starts its VM itself): the
		// VM is nobody's.
		c.log.Warn("cache: the answer to a take was lost: stopping its vm", "vm", taken.id, "err", err)
		killVM(taken.vm)
		removeVMDir(taken.dir)
	}
}

func (c *factoryCache) status() CacheStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := CacheStatus{Pid: os.Getpid(), Size: c.size, Ready: len(c.ready), Starting: c.starting, Taken: c.taken, LastError: c.lastError}
	for v := range c.running {
		select {
		case <-v.vm.Exited():
		default:
			st.Running++
		}
	}
	return st
}

// take hands a ready VM to the process at the other end of conn, for
// sandbox id, and watches that process: when it exits the VM goes too.
func (c *factoryCache) take(conn *net.UnixConn, sandbox string) (*cachedVM, error) {
	if err := persist.ValidateID("sandbox", sandbox); err != nil {
		return nil, err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	owner, err := unix.PidfdOpen(int(cred.Pid), 0)
	if err != nil {
		return nil, fmt.Errorf("watch pid %d: %w", cred.Pid, err)
	}
	c.pruneDead()
	c.mu.Lock()
	var v *cachedVM
	if len(c.ready) > 0 {
		v, c.ready = c.ready[0], c.ready[1:]
		c.taken++
		c.running[v] = true
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if v == nil {
		unix.Close(owner)
		return nil, fmt.Errorf("no vm ready: %w", errdefs.ErrUnavailable)
	}
	b, _ := json.Marshal(map[string]any{"sandbox": sandbox, "owner_pid": cred.Pid})
	os.WriteFile(filepath.Join(v.dir, cacheTakenName), b, 0o600)
	// The sandbox's owner attaches through the VM's other QMP socket;
	// this process only reaps QEMU, and kills it with its owner.
	hypervisor.Detach(v.vm)
	c.log.Info("cache: vm taken", "vm", v.id, "sandbox", sandbox, "owner", cred.Pid)
	go c.watch(v, owner)
	return v, nil
}

// watch kills v's VM when its owner (pidfd) exits first.
func (c *factoryCache) watch(v *cachedVM, pidfd int) {
	defer unix.Close(pidfd)
	gone := make(chan struct{})
	go func() {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		close(gone)
	}()
	select {
	case <-v.vm.Exited():
		// The poll goroutine ends with the owner; it holds nothing.
	case <-gone:
		select {
		case <-v.vm.Exited():
		default:
			c.log.Warn("cache: the owner of a taken vm exited: killing the vm", "vm", v.id)
			killVM(v.vm)
		}
	}
	c.mu.Lock()
	delete(c.running, v)
	c.mu.Unlock()
}

// reclaimCache kills the VMs a cache killed with SIGKILL left ready in
// dir, and removes their directories; taken ones are their sandboxes'.
func reclaimCache(backend, dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		d := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(d, cacheTakenName)); err == nil {
			continue
		}
		killVMIn(backend, filepath.Join(d, "vm"))
		removeVMDir(d)
	}
}

// removeVMDir removes a VM's directory (a cache's, or a sandbox's taken
// from it), refusing to while something is mounted below it.
func removeVMDir(dir string) error {
	if err := mount.UnmountUnder(dir); err != nil {
		return fmt.Errorf("not removing %s: %w", dir, err)
	}
	return os.RemoveAll(dir)
}

// cacheCall sends req to the cache of the factory in dir.
func cacheCall(ctx context.Context, dir string, req cacheRequest) (cacheReply, error) {
	ctx, cancel := context.WithTimeout(ctx, cacheTakeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(dir, cacheSocketName))
	if err != nil {
		return cacheReply{}, fmt.Errorf("factory %s: no cache: %w (%w)", dir, err, errdefs.ErrNotFound)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return cacheReply{}, fmt.Errorf("factory %s: cache: %w", dir, err)
	}
	var rep cacheReply
	if err := json.NewDecoder(conn).Decode(&rep); err != nil {
		return cacheReply{}, fmt.Errorf("factory %s: cache: %w", dir, err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("factory %s: cache: %s", dir, rep.Error)
	}
	return rep, nil
}

// QueryCache asks the cache of the factory in dir how it is;
// errdefs.ErrNotFound when no cache runs.
func QueryCache(ctx context.Context, dir string) (CacheStatus, error) {
	rep, err := cacheCall(ctx, filepath.Clean(dir), cacheRequest{Op: "status"})
	if err != nil {
		return CacheStatus{}, err
	}
	if rep.Status == nil {
		return CacheStatus{}, fmt.Errorf("factory %s: cache: no status in its answer", dir)
	}
	return *rep.Status, nil
}

// StopCache asks the cache of the factory in dir to stop, and
// waits (up to ctx) until it has: its ready VMs stopped, its socket gone.
// No cache running is not an error.
func StopCache(ctx context.Context, dir string) error {
	dir = filepath.Clean(dir)
	st, err := QueryCache(ctx, dir)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := cacheCall(ctx, dir, cacheRequest{Op: "stop"}); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	// The socket goes last, once the ready VMs are stopped (the cache may
	// run in this very process: its pid tells nothing).
	sock := filepath.Join(dir, cacheSocketName)
	for {
		if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !proc.Running(st.Pid, 0) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("factory %s: the cache (pid %d) did not stop: %w", dir, st.Pid, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// takeCachedVM asks the factory's cache for a started VM for sandbox id
// and attaches to it; it returns the VM's directory (vm/ and shared/ in
// it), now the sandbox's. No cache, or none ready, is
// errdefs.ErrNotFound or errdefs.ErrUnavailable: the caller starts a VM
// itself.
func takeCachedVM(ctx context.Context, factory, backend, id string, log *slog.Logger) (hypervisor.Hypervisor, string, error) {
	if _, err := os.Stat(filepath.Join(factory, cacheSocketName)); err != nil {
		return nil, "", fmt.Errorf("factory %s: no cache: %w", factory, errdefs.ErrNotFound)
	}
	rep, err := cacheCall(ctx, factory, cacheRequest{Op: "take", Sandbox: id})
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Clean(rep.VMDir)
	if filepath.Dir(dir) != filepath.Join(factory, cacheDirName) || !strings.HasPrefix(filepath.Base(dir), "cache-") {
		return nil, "", fmt.Errorf("factory %s: cache handed out %q, not one of its directories", factory, rep.VMDir)
	}
	vm, err := hypervisor.Attach(ctx, backend, filepath.Join(dir, "vm"))
	if err != nil {
		// Ours now, but out of reach: it goes.
		killVMIn(backend, filepath.Join(dir, "vm"))
		removeVMDir(dir)
		return nil, "", fmt.Errorf("factory %s: attach to the cache's vm: %w", factory, err)
	}
	log.Info("vm taken from the factory's cache", "dir", dir, "pid", vm.Info().Pid)
	return vm, dir, nil
}
