// Package persist keeps sandbox and container state on disk: JSON files
// under a state root, written atomically (temporary file + rename) and
// guarded by a per-sandbox file lock, so that concurrent invocations of the
// CLIs cannot corrupt them.
//
//	<root>/<sandbox-id>/lock
//	<root>/<sandbox-id>/<name>.json
//
// Directories are 0700 and files 0600: state holds paths and ids that other
// users have no business reading.
package persist

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"github.com/virtcontainers/vc/internal/mount"
)

// DefaultRoot is where state lives unless configured otherwise.
const DefaultRoot = "/run/vc"

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidateID checks that id can name a sandbox or container: letters,
// digits, '_', '.', '-', at most 128 characters, no path separators.
func ValidateID(field, id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("%s %q: must match %s: %w", field, id, idRE, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Store is a state root.
type Store struct {
	root string
}

// New opens (creating) the state root.
func New(root string) (*Store, error) {
	if root == "" {
		root = DefaultRoot
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("state root %q: not absolute: %w", root, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("state root: %w", err)
	}
	return &Store{root: root}, nil
}

// Root is the state root directory.
func (s *Store) Root() string { return s.root }

// Dir is the directory of sandbox id.
func (s *Store) Dir(id string) string { return filepath.Join(s.root, id) }

// Create makes the directory of a new sandbox; ErrAlreadyExists if taken.
func (s *Store) Create(id string) error {
	if err := ValidateID("sandbox id", id); err != nil {
		return err
	}
	if err := os.Mkdir(s.Dir(id), 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("sandbox %q: %w", id, errdefs.ErrAlreadyExists)
		}
		return err
	}
	f, err := os.OpenFile(s.lockPath(id), os.O_CREATE|os.O_EXCL|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		os.Remove(s.Dir(id))
		return fmt.Errorf("sandbox %q: lock file: %w", id, err)
	}
	return f.Close()
}

// The lock file is made once, by Create, and removed last, by Remove: Lock
// never creates it, so a process that waited for the lock of a sandbox being
// removed finds no sandbox instead of leaving a new lock file behind.
func (s *Store) lockPath(id string) string { return filepath.Join(s.Dir(id), "lock") }

// Exists tells whether sandbox id has state.
func (s *Store) Exists(id string) bool {
	_, err := os.Stat(s.Dir(id))
	return err == nil
}

// Lock takes the sandbox's exclusive lock, waiting until ctx is done.
// The returned function releases it.
func (s *Store) Lock(ctx context.Context, id string) (func(), error) {
	if err := ValidateID("sandbox id", id); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.lockPath(id), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
		}
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock sandbox %q: %w", id, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock sandbox %q: %w", id, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	// The sandbox may have been deleted while we waited.
	if !s.Exists(id) {
		f.Close()
		return nil, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return func() { f.Close() }, nil
}

// Save writes v as <name>.json of sandbox id, atomically.
func (s *Store) Save(id, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s state: %w", name, err)
	}
	return atomicfile.WriteFile(filepath.Join(s.Dir(id), name+".json"), b, 0o600)
}

// Load reads <name>.json of sandbox id into v; ErrNotFound if absent.
func (s *Store) Load(id, name string, v any) error {
	if err := ValidateID("sandbox id", id); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(id), name+".json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("sandbox %q: no %s state: %w", id, name, errdefs.ErrNotFound)
		}
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("sandbox %q %s state is corrupt: %w", id, name, err)
	}
	return nil
}

// Delete removes <name>.json of sandbox id; absent is fine.
func (s *Store) Delete(id, name string) error {
	err := os.Remove(filepath.Join(s.Dir(id), name+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Names lists the state names of sandbox id having the given prefix.
func (s *Store) Names(id, prefix string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(s.Dir(id), prefix+"*.json"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, p := range m {
		names = append(names, filepath.Base(p[:len(p)-len(".json")]))
	}
	sort.Strings(names)
	return names, nil
}

// List returns the ids of every sandbox with state.
func (s *Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && idRE.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Remove deletes all state of sandbox id; the caller may hold its lock.
// Mounts left below it (shared root filesystems, volumes) are detached
// first; if one stays, nothing is removed, so a user's files are never
// deleted through it. The lock file goes last, so a failed removal can be
// retried under the lock.
func (s *Store) Remove(id string) error {
	if err := ValidateID("sandbox id", id); err != nil {
		return err
	}
	dir := s.Dir(id)
	if err := mount.UnmountUnder(dir); err != nil {
		return fmt.Errorf("not removing %s: %w", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	// Nothing is mounted below dir any more (UnmountUnder checked).
	for _, e := range ents {
		if e.Name() == "lock" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	if err := os.Remove(s.lockPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return mount.RemoveAll(dir)
}
