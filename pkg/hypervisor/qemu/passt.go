package qemu

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// The NAT NIC's user-mode network stack is passt, one per VM, not QEMU's
// own libslirp (-netdev user): libslirp maps the gateway address to the
// host's loopback, so a guest reached every service on the host's
// 127.0.0.1 at 10.0.2.2, and QEMU 7.2 cannot turn that off. passt runs
// with --no-map-gw: the gateway is not the host, and no guest address
// reaches the host's loopback (unless the NIC asks for HostLoopback). QEMU connects to passt's unix socket
// (-netdev stream); passt serves that one client (--one-off) and ends when
// QEMU closes it, i.e. when QEMU ends.
const (
	passtSocketName = "passt.sock"
	passtLogName    = "passt.log"
	// passtResolvName is the /etc/resolv.conf passt reads when the NIC
	// names its resolvers.
	passtResolvName = "passt-resolv.conf"
	// passtBinary is looked up in PATH.
	passtBinary = "passt"
)

// passtArgs renders n as passt's arguments, serving sock.
func passtArgs(n *hypervisor.NATNIC, sock string, asRoot bool) []string {
	args := []string{"--foreground", "--stderr", "--quiet", "--one-off", "--ipv4-only"}
	if !n.HostLoopback {
		args = append(args, "--no-map-gw")
	}
	args = append(args,
		"--socket", sock,
		"--address", n.GuestAddr.String(),
		"--netmask", strconv.Itoa(n.Network.Bits()),
		"--gateway", n.Gateway.String(),
		// The guest's resolver: UDP queries to it go to the first
		// nameserver of /etc/resolv.conf as passt reads it (see
		// passtResolvConf). No --dns: it names passt's upstreams, not
		// the guest's resolver, and Debian 12's passt (0.0~git20230309)
		// forwards to none of them (given --dns, it reads no
		// resolv.conf and its forwarding target stays unset): with
		// --dns 10.0.2.3 every query timed out.
		"--dns-forward", n.DNS.String(),
	)
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
func startPasst(ctx context.Context, vmID string, n *hypervisor.NATNIC, dir string, dieWithParent bool, cgroup hypervisor.CgroupPlacer) (*sideProc, error) {
	bin, err := exec.LookPath(passtBinary)
	if err != nil {
		return nil, fmt.Errorf("vm %s: nat nic %s: %s (the user-mode network stack; apt-get install passt): %w", vmID, n.ID, err, errdefs.ErrNotFound)
	}
	p := &sideProc{
		what: fmt.Sprintf("vm %s: nat nic %s: passt", vmID, n.ID),
		sock: filepath.Join(dir, passtSocketName),
		log:  filepath.Join(dir, passtLogName),
	}
	os.Remove(p.sock)
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vm %s: nat nic %s: passt log: %w", vmID, n.ID, err)
	}
	defer logf.Close()
	var prepare func() error
	var prepareErr error // set before start returns
	if len(n.Resolvers) > 0 {
		rc := filepath.Join(dir, passtResolvName)
		if err := os.WriteFile(rc, passtResolvConf(n.Resolvers), 0o644); err != nil {
			return nil, fmt.Errorf("vm %s: nat nic %s: resolvers: %w", vmID, n.ID, err)
		}
		defer os.Remove(rc) // passt has read it once it listens
		prepare = func() error {
			if err := bindResolvConf(rc); err != nil {
				prepareErr = fmt.Errorf("vm %s: nat nic %s: resolvers %v: %w", vmID, n.ID, n.Resolvers, err)
				return prepareErr
			}
			return nil
		}
	}
	p.cmd = exec.Command(bin, passtArgs(n, p.sock, os.Geteuid() == 0)...)
	p.cmd.Stdout = logf
	p.cmd.Stderr = logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if dieWithParent {
		p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := p.start(ctx, cgroup, dieWithParent, prepare); err != nil {
		if prepareErr != nil {
			return nil, prepareErr
		}
		return nil, err
	}
	return p, nil
}

func passtResolvConf(resolvers []netip.Addr) []byte {
	var b strings.Builder
	b.WriteString("# vc: the NAT's upstream resolvers (passt forwards to the first)\n")
	for _, r := range resolvers {
		fmt.Fprintf(&b, "nameserver %s\n", r)
	}
	return []byte(b.String())
}

// bindResolvConf binds src over /etc/resolv.conf in a mount namespace of
// the calling thread's own (startCmdPrepared's, which passt inherits and
// which ends with the thread): passt forwards the guest's DNS queries to
// the first nameserver of the resolv.conf it reads, and nothing else of
// the host changes. It needs CAP_SYS_ADMIN.
func bindResolvConf(src string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("a mount namespace for passt (naming resolvers needs CAP_SYS_ADMIN): %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make passt's mounts private: %w", err)
	}
	if err := unix.Mount(src, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s over passt's /etc/resolv.conf: %w", src, err)
	}
	return nil
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
