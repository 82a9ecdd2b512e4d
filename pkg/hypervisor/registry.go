package hypervisor

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
)

// Backend is a hypervisor implementation. A backend package registers
// itself from init (import it for its side effect, as with database/sql
// drivers), so that sandbox code picks one by the name in its
// configuration.
type Backend struct {
	// Name is what configurations call it ("qemu").
	Name string
	// New configures a VM without starting it.
	New func(cfg Config) (Hypervisor, error)
	// Attach finds a VM again, started by this or another process, from
	// its state directory. The VM must still be running: otherwise the
	// error wraps errdefs.ErrNotFound.
	Attach func(ctx context.Context, stateDir string) (Hypervisor, error)
}

var (
	backendsMu sync.RWMutex
	backends   = map[string]Backend{}
)

// Register makes a backend available by name. It panics on a duplicate
// name or a backend without New or Attach, which are programming errors.
func Register(b Backend) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if b.Name == "" || b.New == nil || b.Attach == nil {
		panic("hypervisor: Register of an incomplete backend")
	}
	if _, dup := backends[b.Name]; dup {
		panic("hypervisor: Register called twice for " + b.Name)
	}
	backends[b.Name] = b
}

// Lookup returns the backend of that name; the error wraps
// errdefs.ErrNotFound.
func Lookup(name string) (Backend, error) {
	backendsMu.RLock()
	defer backendsMu.RUnlock()
	b, ok := backends[name]
	if !ok {
		return Backend{}, fmt.Errorf("hypervisor backend %q (have %v): %w", name, backendNamesLocked(), errdefs.ErrNotFound)
	}
	return b, nil
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	backendsMu.RLock()
	defer backendsMu.RUnlock()
	return backendNamesLocked()
}

func backendNamesLocked() []string {
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New configures a VM with the named backend.
func New(backend string, cfg Config) (Hypervisor, error) {
	b, err := Lookup(backend)
	if err != nil {
		return nil, err
	}
	return b.New(cfg)
}

// Attach finds a running VM of the named backend from its state directory.
func Attach(ctx context.Context, backend, stateDir string) (Hypervisor, error) {
	b, err := Lookup(backend)
	if err != nil {
		return nil, err
	}
	return b.Attach(ctx, stateDir)
}
