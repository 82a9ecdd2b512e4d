package container

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

// PauseArg is the hidden argument that makes vc-agent run as the
// sandbox's pause process (RunPause).
const PauseArg = "pause"

// sandbox is the state CreateSandbox sets up.
type sandbox struct {
	id     string
	mounts []string
	pause  *pauseProc

	nsMu sync.Mutex
	ns   sharedNS // guarded by nsMu
}

// pauseProc is PID 1 of the sandbox's shared PID namespace.
type pauseProc struct {
	pid  int
	done chan struct{}

	mu     sync.Mutex
	pidfd  int // -1 if none
	exited bool
}

func (p *pauseProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.exited:
	case p.pidfd >= 0:
		_ = unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
	default:
		_ = unix.Kill(p.pid, unix.SIGKILL)
	}
}

func (p *pauseProc) pidnsPath() string {
	return fmt.Sprintf("/proc/%d/ns/pid", p.pid)
}

// CreateSandbox sets the guest up for the sandbox: hostname, DNS,
// sandbox storages and, on request, the shared PID namespace.
func (m *Manager) CreateSandbox(ctx context.Context, req *pb.CreateSandboxRequest) (retErr error) {
	m.sbMu.Lock()
	defer m.sbMu.Unlock()
	m.mu.Lock()
	existing := m.sandbox
	m.mu.Unlock()
	if existing != nil {
		return fmt.Errorf("sandbox %q: already created: %w", existing.id, errdefs.ErrAlreadyExists)
	}
	if h := req.GetHostname(); len(h) > 64 || strings.ContainsAny(h, "\x00/") {
		return invalid("hostname", "%q is not a valid host name", h)
	}
	resolv, err := resolvConf(req.GetDns())
	if err != nil {
		return err
	}
	log := m.log.With("sandbox_id", req.GetSandboxId())
	if len(req.GetKernelModules()) > 0 {
		log.Warn("kernel_modules ignored: this agent loads the modules listed in its initrd only", "count", len(req.GetKernelModules()))
	}
	if req.GetGuestHookPath() != "" {
		log.Warn("guest_hook_path ignored: guest OCI hooks are not supported", "path", req.GetGuestHookPath())
	}

	sb := &sandbox{id: req.GetSandboxId(), ns: sharedNS{dir: m.cfg.NamespaceDir}}
	defer func() {
		if retErr != nil {
			sb.close(m)
		}
	}()
	if h := req.GetHostname(); h != "" {
		if err := unix.Sethostname([]byte(h)); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
	}
	// Containers share the agent's network namespace: the pod's, whose
	// loopback every pod has up.
	if err := loopbackUp(); err != nil {
		return err
	}
	if resolv != "" {
		if err := os.MkdirAll(filepath.Dir(m.cfg.ResolvConf), 0o755); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		// Written in place, not renamed over: the file may be a mount.
		if err := os.WriteFile(m.cfg.ResolvConf, []byte(resolv), 0o644); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	}
	for i, s := range req.GetStorages() {
		if s == nil {
			continue
		}
		mp, err := m.cfg.Mount(ctx, s)
		if err != nil {
			return fmt.Errorf("storages[%d]: %w", i, err)
		}
		sb.mounts = append(sb.mounts, mp)
	}
	if req.GetSandboxPidns() {
		p, err := m.startPause()
		if err != nil {
			return fmt.Errorf("sandbox_pidns: start pause process: %w", err)
		}
		sb.pause = p
	}
	m.mu.Lock()
	m.sandbox = sb
	m.mu.Unlock()
	log.Info("sandbox created", "hostname", req.GetHostname(), "storages", len(sb.mounts), "sandbox_pidns", sb.pause != nil)
	return nil
}

// resolvConf turns the request's DNS entries into resolv.conf content.
// Entries are resolv.conf lines ("nameserver 10.0.0.10", "search ...",
// "options ..."); a bare address stands for a nameserver line.
func resolvConf(dns []string) (string, error) {
	var b strings.Builder
	for i, line := range dns {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, "\n\r\x00") {
			return "", invalid(fmt.Sprintf("dns[%d]", i), "%q spans several lines", line)
		}
		if net.ParseIP(line) != nil {
			line = "nameserver " + line
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// DestroySandbox removes every container and undoes CreateSandbox.
func (m *Manager) DestroySandbox(ctx context.Context) error {
	m.sbMu.Lock()
	defer m.sbMu.Unlock()
	err := m.removeAll(ctx, 30*time.Second)
	m.mu.Lock()
	sb := m.sandbox
	m.sandbox = nil
	m.mu.Unlock()
	if sb != nil {
		sb.close(m)
		m.log.Info("sandbox destroyed", "sandbox_id", sb.id)
	}
	return err
}

func (sb *sandbox) close(m *Manager) {
	if p := sb.pause; p != nil {
		p.kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			m.log.Warn("pause process did not exit", "pid", p.pid)
		}
		sb.pause = nil
	}
	_ = m.unmountAll(m.log, sb.mounts)
	sb.mounts = nil
	sb.nsMu.Lock()
	sb.ns.release()
	sb.nsMu.Unlock()
}

// loopbackUp brings up the loopback interface of the agent's network
// namespace.
func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback: set up: %w", err)
	}
	return nil
}

// sandboxPidns returns the path of the sandbox's PID namespace.
func (m *Manager) sandboxPidns() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sandbox == nil || m.sandbox.pause == nil {
		return "", fmt.Errorf("sandbox_pidns: the sandbox has no shared PID namespace: %w", errdefs.ErrFailedPrecondition)
	}
	select {
	case <-m.sandbox.pause.done:
		return "", fmt.Errorf("sandbox_pidns: the sandbox's pause process is gone: %w", errdefs.ErrFailedPrecondition)
	default:
	}
	return m.sandbox.pause.pidnsPath(), nil
}

// startPause starts the agent binary as PID 1 of a new PID namespace.
func (m *Manager) startPause() (*pauseProc, error) {
	cmd := exec.Command("/proc/self/exe", PauseArg)
	cmd.Args[0] = "vc-agent"
	// No Pdeathsig: it fires when the forking thread exits, and the Go
	// runtime ends threads (libcontainer locks some and lets them die).
	// The pause process goes when the agent's PID namespace does.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID,
		Setsid:     true,
	}
	p := &pauseProc{pidfd: -1, done: make(chan struct{})}
	var exit <-chan int
	m.reaper.Lock()
	err := cmd.Start()
	if err == nil {
		p.pid = cmd.Process.Pid
		if fd, err := unix.PidfdOpen(p.pid, 0); err == nil {
			p.pidfd = fd
		}
		exit = m.reaper.Watch(p.pid)
	}
	m.reaper.Unlock()
	if err != nil {
		return nil, err
	}
	_ = cmd.Process.Release()
	go func() {
		st := <-exit
		p.mu.Lock()
		p.exited = true
		if p.pidfd >= 0 {
			unix.Close(p.pidfd)
			p.pidfd = -1
		}
		p.mu.Unlock()
		close(p.done)
		m.log.Info("pause process exited", "pid", p.pid, "status", st)
	}()
	m.log.Info("pause process started", "pid", p.pid)
	return p, nil
}

// RunPause is the pause process: PID 1 of the sandbox's PID namespace,
// it only reaps the orphans of that namespace, forever.
func RunPause() {
	signal.Ignore(unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGPIPE, unix.SIGUSR1, unix.SIGUSR2)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
		}
		<-sigs
	}
}
