package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RedirectTable is the nftables table (family inet) that RedirectLoopback
// adds to a network namespace. It holds nothing else: removing it leaves
// the namespace as it was.
const RedirectTable = "vc_port_forward"

// LoopbackRedirect sends the TCP connections made inside a network
// namespace to its loopback addresses (127.0.0.1, ::1), whatever their
// port, to listeners of the calling process in that namespace, which learn
// the port asked for with OriginalDestination.
//
// With a VM runtime the pod's servers listen in the guest, not on the
// loopback of the pod's namespace on the host, where containerd's CRI
// dials localhost:PORT for kubectl port-forward.
type LoopbackRedirect struct {
	NSPath string
	// Listeners are on 127.0.0.1 and, when the namespace has it, ::1.
	Listeners []*net.TCPListener
}

// RedirectLoopback makes a LoopbackRedirect in the namespace at nsPath:
// one listener per loopback address on a free port, and an nftables nat
// rule per address redirecting TCP to it (but to the listener's own port).
// It needs the namespace's loopback up (CNI's loopback plugin) and the nft
// tool. On error nothing is left.
func RedirectLoopback(nsPath string) (_ *LoopbackRedirect, err error) {
	r := &LoopbackRedirect{NSPath: nsPath}
	defer func() {
		if err != nil {
			r.closeListeners()
		}
	}()
	err = inNS(nsPath, func() error {
		// Down, the loopback has no route: a dial fails before any rule.
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return fmt.Errorf("netns %q: loopback: %w", nsPath, err)
		}
		if lo.Flags&net.FlagUp == 0 {
			return fmt.Errorf("netns %q: loopback lo is down: %w", nsPath, syscall.ENETDOWN)
		}
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				return fmt.Errorf("netns %q: loopback 127.0.0.1 is not up: %w", nsPath, err)
			}
			return fmt.Errorf("netns %q: listen on 127.0.0.1: %w", nsPath, err)
		}
		r.Listeners = append(r.Listeners, l.(*net.TCPListener))
		// IPv6 may be off in the namespace: then ::1 is no address.
		if l6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
			r.Listeners = append(r.Listeners, l6.(*net.TCPListener))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, l := range r.Listeners {
		a := l.Addr().(*net.TCPAddr)
		family := "ip"
		if a.IP.To4() == nil {
			family = "ip6"
		}
		rules = append(rules, fmt.Sprintf("\t\t%s daddr %s tcp dport != %d redirect to :%d\n", family, a.IP, a.Port, a.Port))
	}
	// Any table left by an earlier run is replaced, in one transaction.
	script := fmt.Sprintf("add table inet %[1]s\ndelete table inet %[1]s\ntable inet %[1]s {\n\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n%[2]s\t}\n}\n",
		RedirectTable, strings.Join(rules, ""))
	if err := nft(nsPath, script); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *LoopbackRedirect) closeListeners() {
	for _, l := range r.Listeners {
		l.Close()
	}
}

// Close removes the rules and closes the listeners.
func (r *LoopbackRedirect) Close() error {
	err := RemoveLoopbackRedirect(r.NSPath)
	r.closeListeners()
	return err
}

// RemoveLoopbackRedirect removes the redirect rules from the namespace at
// nsPath, whoever added them (a process that died left them). None there,
// or no namespace any more, is no error.
func RemoveLoopbackRedirect(nsPath string) error {
	if _, err := os.Stat(nsPath); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return nft(nsPath, fmt.Sprintf("add table inet %[1]s\ndelete table inet %[1]s\n", RedirectTable))
}

// nft runs an nft script in the namespace at nsPath.
func nft(nsPath, script string) error {
	path, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("netns %q: loopback redirect: %w (install nftables)", nsPath, err)
	}
	cmd := exec.Command("nsenter", "--net="+nsPath, "--", path, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("netns %q: nft: %w: %s", nsPath, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// OriginalDestination is the address a connection accepted by a
// LoopbackRedirect listener was made to, before the redirect
// (SO_ORIGINAL_DST, from conntrack).
func OriginalDestination(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	v6 := c.LocalAddr().(*net.TCPAddr).IP.To4() == nil
	var ap netip.AddrPort
	var serr error
	err = rc.Control(func(fd uintptr) {
		if v6 {
			// IP6T_SO_ORIGINAL_DST answers a sockaddr_in6, which
			// IPv6MTUInfo begins with.
			var info *unix.IPv6MTUInfo
			info, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.IPPROTO_IPV6, unix.SO_ORIGINAL_DST)
			if serr == nil {
				sa := info.Addr
				port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
				ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
			}
			return
		}
		// SO_ORIGINAL_DST answers a sockaddr_in, which IPv6Mreq's 20
		// bytes hold: family, port (big endian), address.
		var m *unix.IPv6Mreq
		m, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.IPPROTO_IP, unix.SO_ORIGINAL_DST)
		if serr == nil {
			b := m.Multiaddr
			ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), uint16(b[2])<<8|uint16(b[3]))
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination of %s: %w", c.RemoteAddr(), err)
	}
	return ap, nil
}
