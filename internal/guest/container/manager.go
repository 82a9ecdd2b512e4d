// Package container runs the sandbox's containers with runc's
// libcontainer: their creation from OCI specs, their processes, standard
// streams, signals, statistics, OOM events, and the sandbox's shared
// state (hostname, DNS, storages, shared PID namespace).
//
// Child processes are reaped by the agent's reaper only: exit statuses
// come from reaper.Watch, never from libcontainer's Process.Wait.
package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	// The device cgroup controller (v1 files, v2 eBPF) registers itself.
	_ "github.com/opencontainers/cgroups/devices"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

// Config is what a Manager needs.
type Config struct {
	// Root is libcontainer's state directory.
	Root string
	// Reaper reaps every child of the agent.
	Reaper *reaper.Reaper
	// Log is the agent's logger.
	Log *slog.Logger
	// Mount mounts a storage and returns its mount point; Unmount
	// releases it.
	Mount   func(ctx context.Context, s *pb.Storage) (string, error)
	Unmount func(mountPoint string) error
	// ResolvConf is where CreateSandbox writes the DNS configuration
	// (default /etc/resolv.conf).
	ResolvConf string
	// NamespaceDir is where the sandbox's shared IPC and UTS namespaces
	// are bind-mounted (pb.SandboxNamespace).
	NamespaceDir string
	// UsernsRootDir is where the root filesystems of containers with a
	// user namespace are bind-mounted (default DefaultUsernsRootDir).
	UsernsRootDir string
	// BeforeOutput, if set, runs before each chunk of a process's
	// output leaves on the data port, as the agent's stdio RPCs run it
	// before they return output (the shared loopback holds output until
	// the host serves a new listener).
	BeforeOutput func(ctx context.Context)
}

// Manager holds the sandbox and its containers.
type Manager struct {
	cfg     Config
	reaper  *reaper.Reaper
	log     *slog.Logger
	noPivot bool
	// cgroup2: the guest runs cgroup v2 (the agent mounts it when the
	// kernel has it), where containers get a cgroup namespace by default.
	cgroup2 bool

	mu         sync.Mutex
	containers map[string]*Container
	reserved   map[string]bool

	sbMu    sync.Mutex // serializes CreateSandbox and DestroySandbox
	sandbox *sandbox   // guarded by mu

	oom oomQueue
}

// New returns a manager.
func New(cfg Config) *Manager {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.Mount == nil {
		cfg.Mount = func(context.Context, *pb.Storage) (string, error) {
			return "", fmt.Errorf("storages: %w", errdefs.ErrNotImplemented)
		}
	}
	if cfg.Unmount == nil {
		cfg.Unmount = func(string) error { return nil }
	}
	if cfg.BeforeOutput == nil {
		cfg.BeforeOutput = func(context.Context) {}
	}
	if cfg.UsernsRootDir == "" {
		cfg.UsernsRootDir = DefaultUsernsRootDir
	}
	if cfg.NamespaceDir == "" {
		cfg.NamespaceDir = filepath.Join(cfg.Root, "..", "sandbox-ns")
	}
	m := &Manager{
		cfg:        cfg,
		reaper:     cfg.Reaper,
		log:        cfg.Log,
		noPivot:    rootIsRamfs(),
		cgroup2:    cgroups.IsCgroup2UnifiedMode(),
		containers: map[string]*Container{},
		reserved:   map[string]bool{},
	}
	m.oom.init()
	return m
}

// reserve claims a container id for a Create in progress.
func (m *Manager) reserve(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.containers[id] != nil || m.reserved[id] {
		return fmt.Errorf("container_id %q: %w", id, errdefs.ErrAlreadyExists)
	}
	m.reserved[id] = true
	return nil
}

func (m *Manager) unreserve(id string) {
	m.mu.Lock()
	delete(m.reserved, id)
	m.mu.Unlock()
}

func (m *Manager) register(c *Container) {
	m.mu.Lock()
	delete(m.reserved, c.id)
	m.containers[c.id] = c
	m.mu.Unlock()
}

func (m *Manager) unregister(c *Container) {
	m.mu.Lock()
	if m.containers[c.id] == c {
		delete(m.containers, c.id)
	}
	m.mu.Unlock()
}

func (m *Manager) get(id string) (*Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, fmt.Errorf("container_id %q: no such container: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (m *Manager) all() []*Container {
	m.mu.Lock()
	defer m.mu.Unlock()
	cs := make([]*Container, 0, len(m.containers))
	for _, c := range m.containers {
		cs = append(cs, c)
	}
	return cs
}

// unmountAll releases storages in reverse order of mounting.
func (m *Manager) unmountAll(log *slog.Logger, mounts []string) error {
	var errs []error
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := m.cfg.Unmount(mounts[i]); err != nil {
			log.Warn("unmount storage", "mount_point", mounts[i], "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeAll removes every container, each given at most timeout.
func (m *Manager) removeAll(ctx context.Context, timeout time.Duration) error {
	var errs []error
	for _, c := range m.all() {
		if err := m.Remove(ctx, c.id, timeout); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close kills and removes every container and ends the sandbox, as on
// shutdown.
func (m *Manager) Close() {
	ctx := context.Background()
	if err := m.removeAll(ctx, 10*time.Second); err != nil {
		m.log.Warn("remove containers on shutdown", "err", err)
	}
	m.sbMu.Lock()
	defer m.sbMu.Unlock()
	m.mu.Lock()
	sb := m.sandbox
	m.sandbox = nil
	m.mu.Unlock()
	if sb != nil {
		sb.close(m)
	}
}

// WriteStdin writes to a process's standard input.
func (m *Manager) WriteStdin(ctx context.Context, id, execID string, data []byte) (int, error) {
	p, err := m.process(id, execID)
	if err != nil {
		return 0, err
	}
	n, err := p.io.write(ctx, data)
	if err != nil {
		return n, fmt.Errorf("exec_id %q: %w", p.execID, err)
	}
	return n, nil
}

// CloseStdin closes a process's standard input.
func (m *Manager) CloseStdin(ctx context.Context, id, execID string) error {
	p, err := m.process(id, execID)
	if err != nil {
		return err
	}
	if err := p.io.closeStdin(); err != nil {
		return fmt.Errorf("exec_id %q: close stdin: %w", p.execID, err)
	}
	return nil
}

// ReadStdout reads up to n bytes of a process's standard output (or
// terminal), waiting for some; ErrEOF at the end.
func (m *Manager) ReadStdout(ctx context.Context, id, execID string, n int) ([]byte, error) {
	return m.read(ctx, id, execID, n, false)
}

// ReadStderr is ReadStdout for standard error. A process with a terminal
// has none: it is at EOF at once.
func (m *Manager) ReadStderr(ctx context.Context, id, execID string, n int) ([]byte, error) {
	return m.read(ctx, id, execID, n, true)
}

func (m *Manager) read(ctx context.Context, id, execID string, n int, stderr bool) ([]byte, error) {
	p, err := m.process(id, execID)
	if err != nil {
		return nil, err
	}
	s := p.io.stdout
	if stderr {
		s = p.io.stderr
	}
	b, err := s.read(ctx, n)
	if errors.Is(err, ErrEOF) {
		p.c.maybeForget(p)
	}
	return b, err
}

// Resize sets the window size of a process's terminal.
func (m *Manager) Resize(ctx context.Context, id, execID string, rows, cols uint32) error {
	p, err := m.process(id, execID)
	if err != nil {
		return err
	}
	if err := p.io.resize(uint16(min(rows, 0xffff)), uint16(min(cols, 0xffff))); err != nil {
		return fmt.Errorf("exec_id %q: %w", p.execID, err)
	}
	return nil
}
