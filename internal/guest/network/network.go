// Package network configures the guest's network for the agent's network
// RPCs: interfaces, routes, ARP/NDP neighbours (through netlink) and
// iptables rules (through iptables-save and iptables-restore).
//
// The semantics are Kata Containers' agent's: interfaces are found by MAC
// address, UpdateInterface replaces a link's addresses, UpdateRoutes
// replaces the routing table of the guest's links. Every request is
// validated in full before anything is changed; errors name the offending
// request field and wrap an errdefs sentinel (ErrInvalidArgument,
// ErrNotFound, ErrAlreadyExists, ...).
package network

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Manager changes one network namespace. Its methods are safe for
// concurrent use; changes are serialised.
type Manager struct {
	mu  sync.Mutex
	h   *netlink.Handle
	own bool // h was opened by NewAt and is closed by Close
}

// log returns the logger of the moment: a Manager may be made before
// the program sets its default logger.
func (m *Manager) log() *slog.Logger {
	return slog.Default().With("subsystem", "network")
}

// New returns a Manager for the network namespace of the calling process.
// It opens a netlink socket per request, in the namespace of the thread
// the request runs on, so it must not be used from a goroutine locked to
// a thread that has switched namespaces.
func New() *Manager {
	return &Manager{h: &netlink.Handle{}}
}

// NewAt returns a Manager for the network namespace ns, usable from any
// thread. Close releases its sockets.
func NewAt(ns netns.NsHandle) (*Manager, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket in network namespace %s: %w", ns, err)
	}
	return &Manager{h: h, own: true}, nil
}

// Close releases the Manager's sockets.
func (m *Manager) Close() {
	if m.own {
		m.h.Close()
	}
}

// invalid returns an InvalidArgument error naming the request field.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// notFound returns a NotFound error naming the request field.
func notFound(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrNotFound)
}

// classified is an error from the kernel together with the errdefs class
// its errno implies; it prints as the kernel error alone.
type classified struct {
	err   error
	class error
}

func (e *classified) Error() string   { return e.err.Error() }
func (e *classified) Unwrap() []error { return []error{e.err, e.class} }

// sysErr wraps a netlink error from doing what (which names the request
// field it concerns), classifying it by errno so that the host sees
// InvalidArgument for a route the kernel rejects, NotFound for a link that
// vanished, and so on.
func sysErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return err
	}
	var class error
	switch errno {
	case unix.EEXIST, unix.ENOTEMPTY:
		class = errdefs.ErrAlreadyExists
	case unix.ENODEV, unix.ENOENT, unix.ESRCH, unix.ENXIO:
		class = errdefs.ErrNotFound
	case unix.EINVAL, unix.ERANGE, unix.EAFNOSUPPORT, unix.EADDRNOTAVAIL, unix.ENETUNREACH, unix.EHOSTUNREACH, unix.EOPNOTSUPP:
		class = errdefs.ErrInvalidArgument
	case unix.EPERM, unix.EACCES:
		class = errdefs.ErrPermissionDenied
	case unix.EBUSY:
		class = errdefs.ErrFailedPrecondition
	default:
		return err
	}
	return &classified{err: err, class: class}
}

// dumpRetries bounds the retries of a netlink dump that the kernel
// interrupted because the table changed meanwhile.
const dumpRetries = 10

// retryDump runs a netlink dump until it is not interrupted.
func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var (
		res []T
		err error
	)
	for range dumpRetries {
		res, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return nil, err
}

// links returns every link of the namespace.
func (m *Manager) links() ([]netlink.Link, error) {
	ls, err := retryDump(m.h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return ls, nil
}

func isLoopback(l netlink.Link) bool {
	return l.Attrs().Flags&net.FlagLoopback != 0
}
