package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// The NAT NIC's user-mode network stack is passt, one per VM, not QEMU's
// own libslirp (-netdev user): libslirp maps the gateway address to the
// host's loopback, so a guest reached every service on the host's
// 127.0.0.1 at 10.0.2.2, and QEMU 7.2 cannot turn that off. passt runs
// with --no-map-gw: the gateway is not the host, and no guest address
// reaches the host's loopback. QEMU connects to passt's unix socket
// (-netdev stream); passt serves that one client (--one-off) and ends when
// QEMU closes it, i.e. when QEMU ends.
const (
	passtSocketName = "passt.sock"
	passtLogName    = "passt.log"
	// PasstBinary is looked up in PATH.
	PasstBinary = "passt"
	// passtReadyTimeout bounds the wait for passt's socket to listen.
	passtReadyTimeout = 10 * time.Second
)

// passtProc is a running passt.
type passtProc struct {
	cmd    *exec.Cmd
	sock   string
	log    string
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// passtArgs renders n as passt's arguments, serving sock.
func passtArgs(n *hypervisor.NATNIC, sock string, asRoot bool) []string {
	args := []string{
		"--foreground", "--stderr", "--quiet", "--one-off",
		"--ipv4-only", "--no-map-gw",
		"--socket", sock,
		"--address", n.GuestAddr.String(),
		"--netmask", strconv.Itoa(n.Network.Bits()),
		"--gateway", n.Gateway.String(),
		// The guest's resolver: UDP queries to it go to passt's first
		// upstream resolver. That is the first nameserver of the host's
		// /etc/resolv.conf unless --dns names others: --dns is the
		// upstream, not the guest's address (--dns 10.0.2.3 sent the
		// queries to 10.0.2.3 on the host's network, and DNS timed out).
		"--dns-forward", n.DNS.String(),
	}
	for _, r := range n.Resolvers {
		args = append(args, "--dns", r.String())
	}
	if asRoot {
		// passt would drop to nobody, who cannot create the socket in
		// the root-only state directory. It still drops every
		// capability and sandboxes itself (namespaces, seccomp).
		args = append(args, "--runas", "0:0")
	}
	for _, f := range n.Forwards {
		flag := "--tcp-ports"
		if f.Protocol == hypervisor.ProtoUDP {
			flag = "--udp-ports"
		}
		args = append(args, flag, passtPortSpec(f))
	}
	return args
}

// passtPortSpec renders a forward as passt's [ADDR/]HOSTPORT:GUESTPORT.
func passtPortSpec(f hypervisor.PortForward) string {
	s := fmt.Sprintf("%d:%d", f.HostPort, f.GuestPort)
	if f.HostAddr.IsValid() {
		s = f.HostAddr.String() + "/" + s
	}
	return s
}

// startPasst starts passt for n with its socket and log in dir and
// returns once the socket listens. A failure (passt missing, a published
// port in use) leaves no process and no socket.
func startPasst(ctx context.Context, vmID string, n *hypervisor.NATNIC, dir string, dieWithParent bool) (_ *passtProc, err error) {
	bin, err := exec.LookPath(PasstBinary)
	if err != nil {
		return nil, fmt.Errorf("vm %s: nat nic %s: %s (the user-mode network stack; apt-get install passt): %w", vmID, n.ID, err, errdefs.ErrNotFound)
	}
	p := &passtProc{
		sock:   filepath.Join(dir, passtSocketName),
		log:    filepath.Join(dir, passtLogName),
		exited: make(chan struct{}),
	}
	os.Remove(p.sock)
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vm %s: nat nic %s: passt log: %w", vmID, n.ID, err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, passtArgs(n, p.sock, os.Geteuid() == 0)...)
	p.cmd.Stdout = logf
	p.cmd.Stderr = logf
	// Its own process group, like QEMU: it lives as long as QEMU, which
	// may outlive this process.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if dieWithParent {
		p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	release := make(chan struct{})
	if err := startCmd(p.cmd, dieWithParent, release); err != nil {
		return nil, fmt.Errorf("vm %s: nat nic %s: start %s: %w", vmID, n.ID, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
		close(release)
	}()
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, passtReadyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if listeningUnix(p.sock) {
			// passt creates it with its umask; QEMU (the same user) is
			// its only client.
			if err := os.Chmod(p.sock, 0o600); err != nil {
				return nil, fmt.Errorf("vm %s: nat nic %s: passt socket: %w", vmID, n.ID, err)
			}
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("vm %s: nat nic %s: passt exited (%v): %s: %w", vmID, n.ID, p.err, passtLogTail(p.log), errdefs.ErrFailedPrecondition)
		case <-ctx.Done():
			return nil, fmt.Errorf("vm %s: nat nic %s: passt socket %s did not listen: %w", vmID, n.ID, p.sock, errors.Join(ctx.Err(), errdefs.ErrUnavailable))
		case <-tick.C:
		}
	}
}

// stop kills passt, reaps it and removes its socket. It is a no-op on a
// nil or exited passt (but for the socket).
func (p *passtProc) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(killTimeout):
		}
	}
	os.Remove(p.sock)
}

// wait gives passt up to d to end on its own (it does once QEMU closed
// its socket), then stops it.
func (p *passtProc) wait(d time.Duration) {
	if p == nil {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	p.stop()
}

// listeningUnix tells whether a unix stream socket bound to path listens
// in this thread's network namespace, the one passt was started in,
// without connecting to it: a connection would be passt's one client.
// It reads /proc/thread-self/net/unix, not /proc/self/net/unix, which is
// the main thread's: a library user that locked the main thread into
// another namespace and let it go (Go then parks that thread for good)
// would leave /proc/self/net in that namespace, and no passt socket
// would ever show (seen in the e2e tests, after the network ones).
func listeningUnix(path string) bool {
	f, err := os.Open("/proc/thread-self/net/unix")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fl := strings.Fields(sc.Text())
		if len(fl) == 8 && fl[7] == path && fl[3] == "00010000" {
			return true
		}
	}
	return false
}

// passtLogTail is the end of passt's log, without its complaints about
// a missing syslog.
func passtLogTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "Failed to send ") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 5 {
		keep = keep[len(keep)-5:]
	}
	return strings.Join(keep, "; ")
}
