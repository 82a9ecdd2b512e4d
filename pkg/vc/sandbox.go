package vc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/cleanup"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/pkg/agent"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/persist"
)

// BootTimeout bounds how long CreateSandbox waits for the agent to answer.
// Under TCG a boot takes 2-5 s; a loaded machine can take much longer.
var BootTimeout = 90 * time.Second

// Sandbox is one VM and the containers in it.
type Sandbox struct {
	id    string
	store *persist.Store
	log   *slog.Logger
	owner bool

	mu     sync.Mutex
	status SandboxStatus

	vm     hypervisor.Hypervisor // owner only
	client *ttrpc.Client
	agent  pb.AgentServiceService
	health pb.HealthService
	data   *dataClient // owner only: the stdio data port (dataport.go), guarded by mu
	proxy  *ttrpc.Server
	sockp  sockProxies // sockproxy.go
	vols   volWatches  // watchvol.go

	// exited is closed once the owner has seen the VM end and cleaned up.
	exited chan struct{}
}

// ID is the sandbox id.
func (s *Sandbox) ID() string { return s.id }

// Dir is the sandbox's state directory.
func (s *Sandbox) Dir() string { return s.store.Dir(s.id) }

func (s *Sandbox) sharedDir() string { return filepath.Join(s.vmDir(), "shared") }

// vmDir holds the VM's state (vm/) and the shared directory: the
// sandbox's directory, or the directory of a VM taken from a factory's
// cache.
func (s *Sandbox) vmDir() string {
	if s.status.VMDir != "" {
		return s.status.VMDir
	}
	return s.Dir()
}

// Metrics are the guest's metrics (the agent's and the guest kernel's),
// in Prometheus' text format.
func (s *Sandbox) Metrics(ctx context.Context) (string, error) {
	if err := s.running(); err != nil {
		return "", err
	}
	r, err := s.agent.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		return "", fmt.Errorf("sandbox %s: metrics: %w", s.id, err)
	}
	return r.Metrics, nil
}

// CreateSandbox boots the sandbox's VM, waits for its agent and sets the
// sandbox up in it. The calling process owns the VM and must outlive
// it: once the owner has exited, the next look at the sandbox stops it
// (see the package doc). Only the owner notices the VM's death at once;
// others see it on their next look. On error nothing is left behind.
func CreateSandbox(ctx context.Context, cfg SandboxConfig) (_ *Sandbox, err error) {
	ctx, endSpan := traceOp(ctx, "sandbox.create", cfg.ID, "")
	defer func() { endSpan(err) }()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	store, err := persist.New(cfg.StateRoot)
	if err != nil {
		return nil, err
	}
	if err := store.Create(cfg.ID); err != nil {
		return nil, err
	}
	// Hold the lock while the sandbox is half made: others wait, or (ps)
	// report it as it is recorded. A failure is undone under the lock.
	unlock, err := store.Lock(ctx, cfg.ID)
	if err != nil {
		store.Remove(cfg.ID)
		return nil, err
	}
	defer unlock()
	cu := cleanup.Make(func() { store.Remove(cfg.ID) })
	defer cu.Clean()

	s := &Sandbox{
		id:     cfg.ID,
		store:  store,
		owner:  true,
		log:    slog.Default().With("sandbox", cfg.ID),
		exited: make(chan struct{}),
	}
	s.status = SandboxStatus{
		ID:          cfg.ID,
		State:       StateCreated,
		Created:     time.Now().UTC(),
		Config:      cfg,
		OwnerPid:    os.Getpid(),
		OwnerStart:  mustStart(os.Getpid()),
		AgentSocket: filepath.Join(s.Dir(), "agent.sock"),
	}
	if w := cfg.Hypervisor.Workload; w != nil {
		s.status.Reserved = Reservation{CPUs: w.CPUs, MemoryMiB: w.MemoryMiB}
	}
	// The state is recorded as each host resource appears, so that if
	// this process dies halfway, the next look (refresh) finds and
	// releases them.
	if err := s.save(); err != nil {
		return nil, err
	}

	nics, tapFiles, err := s.setupNetwork(cfg)
	if err != nil {
		return nil, err
	}
	cu.Add(s.teardownNetwork)
	if err := s.save(); err != nil {
		return nil, err
	}
	cg, err := s.createCgroup(cfg.Cgroup)
	if err != nil {
		return nil, err
	}
	if cg != nil {
		cu.Add(func() {
			if err := cg.Remove(); err != nil {
				s.log.Warn("remove the vm's cgroup", "err", err)
			}
		})
		if err := s.save(); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	vmCtx, endVM := traceOp(ctx, "vm.start", cfg.ID, "")
	started, err := startVM(vmCtx, s.Dir(), cfg, nics, cg, s.log)
	endVM(err)
	for _, f := range tapFiles {
		f.Close() // the VM holds its own
	}
	if err != nil {
		return nil, err
	}
	vm, fromTemplate := started.vm, started.fromSource
	if started.dir != s.Dir() {
		s.status.VMDir = started.dir
		cu.Add(func() { removeVMDir(started.dir) })
	}
	cu.Add(func() { killVM(vm) })
	s.vm = vm
	info := vm.Info()
	s.status.VMPid = info.Pid
	s.status.VMStart = mustStart(info.Pid)
	s.status.ConsoleLog = info.ConsoleLog
	s.status.Accel = vm.Capabilities().Accel
	s.status.Boot.VMStart = time.Since(start)
	s.status.Boot.FromTemplate = fromTemplate
	s.status.Boot.FromCache = started.fromCache
	s.log.Info("vm started", "pid", info.Pid, "accel", s.status.Accel, "took", s.status.Boot.VMStart)
	if err := s.save(); err != nil {
		return nil, err
	}

	if err := s.connectAgent(ctx, vm); err != nil {
		return nil, err
	}
	cu.Add(func() { s.client.Close(); s.data.close() })
	s.status.Boot.AgentReady = time.Since(start) - s.status.Boot.VMStart
	s.log.Info("agent ready", "took", time.Since(start))
	setup := time.Now()
	// The policy holds before the agent does anything for the sandbox.
	if cfg.Policy != "" {
		if err := setPolicy(ctx, s.agent, cfg.Policy); err != nil {
			return nil, err
		}
	}
	// The random pool and the clock are set beside CreateSandbox (the
	// agent serves calls concurrently): they do not depend on each other.
	reseeded := make(chan error, 1)
	go func() {
		if fromTemplate {
			// Every VM of a template resumes with the template's
			// random pool: make this one's its own.
			reseeded <- reseedGuest(ctx, s.agent)
		} else {
			reseeded <- nil
		}
	}()
	clockSet := make(chan struct{})
	go func() {
		defer close(clockSet)
		// The guest read its clock from the RTC, in whole seconds,
		// while it booted (seconds ago under TCG), or resumed a
		// template's clock: set it to the host's.
		now := time.Now()
		if _, err := s.agent.SetGuestDateTime(ctx, &pb.SetGuestDateTimeRequest{Sec: now.Unix(), Usec: int64(now.Nanosecond() / 1000)}); err != nil {
			s.log.Warn("set the guest's clock to the host's", "err", err)
		}
	}()
	waitSetup := func() error {
		<-clockSet
		return <-reseeded
	}

	req := &pb.CreateSandboxRequest{
		Hostname:     cfg.Hostname,
		Dns:          cfg.DNS,
		SandboxId:    cfg.ID,
		SandboxPidns: cfg.SharedPidNS,
		Storages:     []*pb.Storage{sharedStorage(cfg.Hypervisor)},
	}
	if req.Hostname == "" {
		req.Hostname = shortID(cfg.ID)
	}
	if len(req.Dns) == 0 && cfg.NATEnabled() {
		req.Dns = []string{"nameserver " + NATDNS.String()}
	}
	_, err = s.agent.CreateSandbox(ctx, req)
	reseedErr := waitSetup()
	if err != nil {
		return nil, fmt.Errorf("agent CreateSandbox: %w", err)
	}
	if reseedErr != nil {
		return nil, reseedErr
	}
	// NICs hotplugged into a VM of a template appear in the guest
	// shortly after: wait for them.
	nicWait := time.Duration(0)
	if fromTemplate {
		nicWait = 30 * time.Second
	}
	switch {
	case cfg.NATEnabled() && fromTemplate:
		s.log.Info("nat configured by the factory's template", "guest", natGuestName, "addr", NATGuestAddr, "publish", fmt.Sprint(cfg.NAT.Publish))
	case cfg.NATEnabled():
		if err := s.configureNAT(ctx); err != nil {
			return nil, err
		}
	}
	// After the NAT: the routes of the endpoints (bridges beside the
	// NAT) are set with the NAT's.
	if err := s.configureGuestNetwork(ctx, s.status.Endpoints, nicWait); err != nil {
		return nil, err
	}
	s.status.Boot.SandboxSetup = time.Since(setup)
	if err := s.serveProxy(); err != nil {
		return nil, err
	}
	cu.Add(func() { s.proxy.Close() })
	s.status.State = StateRunning
	if err := s.save(); err != nil {
		return nil, err
	}
	go s.monitor()
	cu.Release()
	s.collectSpans(ctx)
	return s, nil
}

// connectAgent dials the agent until it answers a health check, the VM
// dies, or BootTimeout passes.
func (s *Sandbox) connectAgent(ctx context.Context, vm hypervisor.Hypervisor) (err error) {
	ctx, endSpan := traceOp(ctx, "agent.connect", s.id, "")
	defer func() { endSpan(err) }()
	c, h, err := DialAgent(ctx, vm)
	if err != nil {
		return err
	}
	s.client, s.health, s.agent = c, h, pb.NewAgentServiceClient(c)
	s.connectDataPort(vm)
	return nil
}

// DialAgent dials vm's agent until it answers a health check, the VM
// dies, or BootTimeout passes.
func DialAgent(ctx context.Context, vm hypervisor.Hypervisor) (*ttrpc.Client, pb.HealthService, error) {
	ctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	var last error
	for {
		conn, err := agent.Dial(ctx, vm.Info().AgentAddress)
		if err == nil {
			c := agent.NewClient(conn)
			h := pb.NewHealthClient(c)
			cctx, ccancel := context.WithTimeout(tracing.Quiet(ctx), 2*time.Second)
			_, err = h.Check(cctx, &pb.CheckRequest{})
			ccancel()
			if err == nil {
				return c, h, nil
			}
			c.Close()
		}
		last = err
		select {
		case <-vm.Exited():
			return nil, nil, fmt.Errorf("vm exited during boot: %w: %w", errdefs.ErrUnavailable, vm.Info().ExitError)
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("agent did not answer within %s (last error: %v): %w\nconsole:\n%s", BootTimeout, last, context.DeadlineExceeded, consoleTail(vm.Info().ConsoleLog, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serveProxy serves the agent protocol on AgentSocket, forwarding every
// call over the owner's connection (the virtio-serial channel takes one
// connection at a time).
func (s *Sandbox) serveProxy() error {
	l, err := net.Listen("unix", s.status.AgentSocket)
	if err != nil {
		return fmt.Errorf("agent proxy socket: %w", err)
	}
	if err := os.Chmod(s.status.AgentSocket, 0o600); err != nil {
		l.Close()
		return err
	}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(agent.StatusErrors))
	if err != nil {
		l.Close()
		return err
	}
	pb.RegisterAgentServiceService(srv, s.agent)
	pb.RegisterHealthService(srv, s.health)
	pb.RegisterPortForwardService(srv, pb.NewPortForwardClient(s.client))
	pb.RegisterTracingService(srv, pb.NewTracingClient(s.client))
	s.proxy = srv
	go srv.Serve(context.Background(), l)
	return nil
}

// monitor waits for the VM to end, then records the sandbox as stopped and
// releases what the VM used.
func (s *Sandbox) monitor() {
	<-s.vm.Exited()
	s.log.Info("vm exited")
	s.stopWatches()
	s.proxy.Close()
	s.client.Close()
	s.data.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if unlock, err := s.store.Lock(ctx, s.id); err == nil {
		// Another process may have stopped, or stopped and deleted, the
		// sandbox meanwhile: judge what is recorded, not what this
		// process last saw, and never write state back once it is gone.
		var st SandboxStatus
		if s.store.Load(s.id, sandboxKey, &st) == nil {
			s.mu.Lock()
			s.status = st
			s.mu.Unlock()
			s.markStopped("vm exited")
		}
		unlock()
	}
	close(s.exited)
}

// markStopped records the sandbox and its containers as stopped and
// releases host resources. The lock is held.
func (s *Sandbox) markStopped(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.State == StateStopped {
		return
	}
	s.status.State = StateStopped
	s.status.StopReason = reason
	cs, _ := s.loadContainers()
	for _, c := range cs {
		if c.State != StateStopped {
			c.State = StateStopped
			if c.ExitCode == 0 {
				c.ExitCode = 255
			}
			c.Exited = time.Now().UTC()
			s.store.Save(s.id, containerKey(c.ID), c)
		}
		go s.stopSockProxies(c.ID) // s.mu is held
		unshareContainer(s.sharedDir(), c.ID)
	}
	go s.stopWatches() // s.mu is held
	s.teardownNetwork()
	os.Remove(s.status.AgentSocket)
	s.store.Save(s.id, sandboxKey, s.status)
}

// Exited is closed when an owned sandbox's VM has ended and been cleaned
// up. For a fetched sandbox it never closes.
func (s *Sandbox) Exited() <-chan struct{} { return s.exited }

func (s *Sandbox) save() error {
	return s.store.Save(s.id, sandboxKey, s.status)
}

// FetchSandbox finds a sandbox made by any process, through its state.
func FetchSandbox(ctx context.Context, stateRoot, id string) (*Sandbox, error) {
	s, err := openSandbox(stateRoot, id)
	if err != nil {
		return nil, err
	}
	if s.status.State == StateRunning || s.status.State == StatePaused {
		conn, err := agent.Dial(ctx, "unix://"+s.status.AgentSocket)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: agent socket: %w", id, err)
		}
		s.client = agent.NewClient(conn)
		s.agent = pb.NewAgentServiceClient(s.client)
		s.health = pb.NewHealthClient(s.client)
	}
	return s, nil
}

// openSandbox loads sandbox id from the state under stateRoot.
func openSandbox(stateRoot, id string) (*Sandbox, error) {
	store, err := persist.New(stateRoot)
	if err != nil {
		return nil, err
	}
	return loadSandbox(store, id)
}

// loadSandbox reads a sandbox's state, noticing a VM that died, without
// connecting to its agent.
func loadSandbox(store *persist.Store, id string) (*Sandbox, error) {
	s := &Sandbox{id: id, store: store, log: slog.Default().With("sandbox", id), exited: make(chan struct{})}
	if err := store.Load(id, sandboxKey, &s.status); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("no sandbox %q: %w", id, errdefs.ErrNotFound)
		}
		return nil, err
	}
	s.refresh()
	return s, nil
}

// refresh notices a VM or owner that died without recording it, and a
// creator that died halfway, and releases what they left. A sandbox
// someone holds the lock of (being created or changed) is reported as
// recorded.
func (s *Sandbox) refresh() {
	if s.status.State == StateStopped || s.healthy() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	unlock, err := s.store.Lock(ctx, s.id)
	if err != nil {
		return
	}
	defer unlock()
	s.refreshLocked()
}

// refreshLocked is refresh for a caller holding the sandbox's lock.
func (s *Sandbox) refreshLocked() {
	// Judge what is recorded now, not what was read before the lock.
	var st SandboxStatus
	if s.store.Load(s.id, sandboxKey, &st) != nil {
		return
	}
	s.status = st
	if st.State == StateStopped || s.healthy() {
		return
	}
	reason := "vm process gone"
	if !proc.Running(st.OwnerPid, st.OwnerStart) {
		// Without its owner nothing serves the agent: the VM is
		// unreachable, so it is stopped for good.
		reason = "owner process gone"
		if s.vmAlive() {
			killPid(st.VMPid)
		}
	}
	s.markStopped(reason)
}

// healthy tells whether the owner lives and, once started, the VM too.
func (s *Sandbox) healthy() bool {
	if !proc.Running(s.status.OwnerPid, s.status.OwnerStart) {
		return false
	}
	return s.status.VMPid == 0 || s.vmAlive()
}

// Status reports the sandbox's state.
func (s *Sandbox) Status() SandboxStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// ListSandbox returns the status of every sandbox under stateRoot.
func ListSandbox(ctx context.Context, stateRoot string) ([]SandboxStatus, error) {
	store, err := persist.New(stateRoot)
	if err != nil {
		return nil, err
	}
	ids, err := store.List()
	if err != nil {
		return nil, err
	}
	var out []SandboxStatus
	for _, id := range ids {
		s, err := loadSandbox(store, id)
		if err != nil {
			continue // being created or deleted
		}
		out = append(out, s.status)
	}
	return out, nil
}

// StatusSandbox reports one sandbox's state.
func StatusSandbox(ctx context.Context, stateRoot, id string) (SandboxStatus, error) {
	s, err := openSandbox(stateRoot, id)
	if err != nil {
		return SandboxStatus{}, err
	}
	return s.Status(), nil
}

// ContainerStatuses reports the containers of sandbox id from its state,
// without connecting to its agent.
func ContainerStatuses(ctx context.Context, stateRoot, id string) ([]ContainerStatus, error) {
	s, err := openSandbox(stateRoot, id)
	if err != nil {
		return nil, err
	}
	return s.ListContainers(ctx)
}

// Close drops this process's connection to the sandbox. An owner keeps
// serving other processes until the VM ends; Close on an owner does not
// stop the VM.
func (s *Sandbox) Close() {
	if !s.owner && s.client != nil {
		s.client.Close()
	}
}

// locked runs fn under the sandbox's lock, once its recorded state is
// reloaded and found to be one of states (any, when none is given): the
// prelude of every operation that changes a sandbox or its containers.
func (s *Sandbox) locked(ctx context.Context, op string, states []State, fn func() error) error {
	unlock, err := s.store.Lock(ctx, s.id)
	if err != nil {
		return err
	}
	defer unlock()
	var st SandboxStatus
	if err := s.store.Load(s.id, sandboxKey, &st); err != nil {
		return fmt.Errorf("%s: sandbox %s: %w", op, s.id, err)
	}
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
	if !st.State.in(states...) {
		return fmt.Errorf("%s: sandbox %s is %s, not %s: %w", op, s.id, st.State, joinStates(states), errdefs.ErrFailedPrecondition)
	}
	return fn()
}

// connectionLost tells whether err is the agent connection closing under
// a call rather than the agent's answer: directly, or through an owner's
// proxy (whose own closed connection reaches this process as a status
// carrying its text).
func connectionLost(err error) bool {
	if errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{ttrpc.ErrClosed.Error(), "connection reset by peer", "broken pipe", "use of closed network connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Stop stops the sandbox: the agent powers the VM off; after timeout the
// VM process is killed. Containers are recorded as stopped.
func (s *Sandbox) Stop(ctx context.Context, timeout time.Duration) (err error) {
	ctx, endSpan := traceOp(ctx, "sandbox.stop", s.id, "")
	defer func() { endSpan(err) }()
	return s.locked(ctx, "stop", nil, func() error { return s.stopLocked(ctx, timeout) })
}

func (s *Sandbox) stopLocked(ctx context.Context, timeout time.Duration) error {
	if s.status.State == StateStopped {
		return nil
	}
	destroyed := false
	if s.agent != nil {
		s.collectSpans(ctx) // the last chance: the guest goes
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.agent.DestroySandbox(dctx, &pb.DestroySandboxRequest{})
		cancel()
		if err != nil {
			// The agent powers the VM off as it answers: the answer can
			// be lost with the connection (the guest, or the owner's
			// proxy, gone first). The VM going down is then what was
			// asked, not a failure to tell a person about (vc rm -f
			// printed it).
			lvl := slog.LevelWarn
			if connectionLost(err) {
				lvl = slog.LevelDebug
			}
			s.log.Log(ctx, lvl, "agent DestroySandbox failed; waiting for the VM to power off", "err", err)
		}
		destroyed = err == nil
	}
	// The agent answers DestroySandbox once its containers are gone, its
	// mounts undone and the guest's filesystems synced: there is nothing
	// left to lose, and QEMU is told to quit rather than waited for while
	// the guest kernel powers off. Otherwise the guest gets its timeout.
	if !destroyed {
		deadline := time.Now().Add(timeout)
		for s.vmAlive() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if s.vmAlive() {
			s.log.Warn("vm did not power off in time; killing it", "timeout", timeout)
			killPid(s.status.VMPid)
		}
	}
	if s.owner {
		killVM(s.vm)
		s.proxy.Close()
	} else if vm, err := s.attachVM(ctx); err == nil {
		// Let the backend remove its sockets and files.
		killVM(vm)
	}
	if s.vmAlive() {
		killPid(s.status.VMPid)
	}
	if s.client != nil {
		s.client.Close()
	}
	s.data.close()
	s.markStopped("stopped")
	return nil
}

// Delete removes a stopped sandbox's state.
func (s *Sandbox) Delete(ctx context.Context) (err error) {
	ctx, endSpan := traceOp(ctx, "sandbox.delete", s.id, "")
	defer func() { endSpan(err) }()
	// Removed under the lock: whoever waits for it finds no sandbox.
	return s.locked(ctx, "delete", nil, func() error {
		s.refreshLocked()
		if s.status.State != StateStopped {
			return fmt.Errorf("sandbox %s is %s; stop it first: %w", s.id, s.status.State, errdefs.ErrFailedPrecondition)
		}
		cs, _ := s.loadContainers()
		for _, c := range cs {
			unshareContainer(s.sharedDir(), c.ID)
		}
		s.teardownNetwork() // what a failed teardown at stop left
		if err := s.removeCgroup(); err != nil {
			return err
		}
		if s.status.VMDir != "" {
			if err := removeVMDir(s.status.VMDir); err != nil {
				return err
			}
		}
		return s.store.Remove(s.id)
	})
}

// StopSandbox stops sandbox id.
func StopSandbox(ctx context.Context, stateRoot, id string, timeout time.Duration) error {
	s, err := FetchSandbox(ctx, stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Stop(ctx, timeout)
}

// DeleteSandbox removes stopped sandbox id.
func DeleteSandbox(ctx context.Context, stateRoot, id string) error {
	s, err := FetchSandbox(ctx, stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Delete(ctx)
}

// Pause freezes the VM's CPUs.
func (s *Sandbox) Pause(ctx context.Context) error { return s.setPaused(ctx, true) }

// Resume thaws a paused VM.
func (s *Sandbox) Resume(ctx context.Context) error { return s.setPaused(ctx, false) }

func (s *Sandbox) setPaused(ctx context.Context, pause bool) error {
	op, want, from := "pause", StatePaused, StateRunning
	if !pause {
		op, want, from = "resume", StateRunning, StatePaused
	}
	return s.locked(ctx, op, []State{from}, func() error {
		vm := s.vm
		if vm == nil {
			var err error
			if vm, err = s.attachVM(ctx); err != nil {
				return fmt.Errorf("sandbox %s: %w", s.id, err)
			}
		}
		var err error
		if pause {
			err = hypervisor.Pause(ctx, vm)
		} else {
			err = hypervisor.Resume(ctx, vm)
		}
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", s.id, err)
		}
		s.status.State = want
		return s.save()
	})
}

func (s *Sandbox) vmAlive() bool { return proc.Running(s.status.VMPid, s.status.VMStart) }

func mustStart(pid int) uint64 {
	st, _ := proc.StartTime(pid)
	return st
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
