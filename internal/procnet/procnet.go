// Package procnet reads a network namespace's sockets from the kernel's
// /proc/net/{tcp,tcp6,udp,udp6} tables (those of the reading thread's
// namespace): the shim and the agent use it to find the listeners of the
// host's and the guest's loopback.
package procnet

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Protocols of a Listener.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Socket states of the tables' st column (include/net/tcp_states.h).
const (
	stateClose  = 0x07 // an unconnected UDP socket
	stateListen = 0x0a
)

// Listener is a TCP socket listening, or an unconnected bound UDP socket.
type Listener struct {
	Protocol string
	Addr     netip.Addr // IPv4-mapped IPv6 addresses are unmapped
	Port     uint16
}

func (l Listener) String() string {
	return l.Protocol + "/" + netip.AddrPortFrom(l.Addr, l.Port).String()
}

// Localhost tells whether l is reached at localhost (127.0.0.1 or ::1):
// bound to one of them or to the wildcard address.
func (l Listener) Localhost() bool {
	return l.Addr == localhost4 || l.Addr == netip.IPv6Loopback() || l.Addr.IsUnspecified()
}

var localhost4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})

type table struct{ file, proto string }

var (
	tcpTables = []table{{"tcp", TCP}, {"tcp6", TCP}}
	allTables = append(tcpTables, table{"udp", UDP}, table{"udp6", UDP})
)

// Listeners reads the listeners of the tables in dir (/proc/self/net for
// the caller's namespace), sorted and without duplicates.
func Listeners(dir string) ([]Listener, error) {
	return listeners(dir, allTables)
}

// TCPListeners is Listeners for TCP only: half the tables to read.
func TCPListeners(dir string) ([]Listener, error) {
	return listeners(dir, tcpTables)
}

func listeners(dir string, tables []table) ([]Listener, error) {
	var out []Listener
	for _, t := range tables {
		f, err := os.Open(filepath.Join(dir, t.file))
		if err != nil {
			if os.IsNotExist(err) && strings.HasSuffix(t.file, "6") {
				continue // a kernel without IPv6
			}
			return nil, err
		}
		ls, err := parse(f, t.proto)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		out = append(out, ls...)
	}
	slices.SortFunc(out, compare)
	return slices.Compact(out), nil
}

func compare(a, b Listener) int {
	if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
		return c
	}
	if a.Port != b.Port {
		return int(a.Port) - int(b.Port)
	}
	return a.Addr.Compare(b.Addr)
}

// parse reads one table: a header line, then a line per socket,
// "sl local_address rem_address st ...", addresses as HEX:PORT with the
// address in the kernel's byte order, 32 bits at a time.
func parse(r io.Reader, proto string) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if n == 1 || len(f) == 0 {
			continue // the header
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: %d fields, want at least 4", n, len(f))
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q: %w", n, f[3], err)
		}
		want := uint64(stateListen)
		if proto == UDP {
			want = stateClose
		}
		if st != want {
			continue
		}
		local, err := parseAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", n, err)
		}
		if proto == UDP {
			remote, err := parseAddrPort(f[2])
			if err != nil {
				return nil, fmt.Errorf("line %d: remote address: %w", n, err)
			}
			if remote.Port() != 0 || local.Port() == 0 {
				continue // connected, or not bound
			}
		}
		out = append(out, Listener{Protocol: proto, Addr: local.Addr().Unmap(), Port: local.Port()})
	}
	return out, sc.Err()
}

// parseAddrPort reads HEX:PORT: 8 hex digits (IPv4) or 32 (IPv6), each
// group of 8 a 32-bit word in the kernel's (here the reader's) byte
// order, and the port in hex.
func parseAddrPort(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q: no ':'", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port: %w", s, err)
	}
	raw, err := hex.DecodeString(h)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("%q: want 8 or 32 hex digits of address", s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a, uint16(port)), nil
}
