// Package volume keeps docker's local volumes: named directories that
// outlive the containers mounting them.
//
//	ROOT/.lock              the store's file lock
//	ROOT/.users             held shared while a container that mounts
//	                        volumes is being made (Reserve)
//	ROOT/NAME/_data         the volume's content, bound into containers
//	ROOT/NAME/volume.json   its metadata (creation time, labels)
//
// A volume appears whole or not at all: it is made in a temporary
// directory (ROOT/.tmp-*) and renamed into place, and removed by renaming
// it away (ROOT/.rm-*) first. Writers hold the lock exclusively, readers
// shared; the store does not know which containers use a volume, its
// callers say so (Remove, Prune).
package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/virtcontainers/vc/internal/flock"

	"github.com/containerd/errdefs"
)

// AnonymousLabel marks a volume made for one container without a name,
// as docker marks it: vc rm -v and vc run --rm remove it with the
// container.
const AnonymousLabel = "com.docker.volume.anonymous"

// Volume is what vc volume inspect shows, docker's fields.
type Volume struct {
	CreatedAt  string            `json:"CreatedAt"`
	Driver     string            `json:"Driver"`
	Labels     map[string]string `json:"Labels"`
	Mountpoint string            `json:"Mountpoint"`
	Name       string            `json:"Name"`
	Options    map[string]string `json:"Options"`
	Scope      string            `json:"Scope"`
}

// Anonymous tells whether v was made without a name for one container.
func (v Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// Store is the volumes under one root, <data-root>/volumes.
type Store struct{ root string }

// Open returns the store at root, creating the directory.
func Open(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("volume store: %w", err)
	}
	return &Store{root: root}, nil
}

// validName is docker's rule for a local volume's name.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// CheckName refuses a name docker's local driver refuses.
func CheckName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("volume name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ is allowed (a host directory needs an absolute path): %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// NewName is a name for an anonymous volume: 64 hex digits, as docker's.
func NewName() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Store) dir(name string) string { return filepath.Join(s.root, name) }

// Mountpoint is where volume name's content is.
func (s *Store) Mountpoint(name string) string { return filepath.Join(s.dir(name), "_data") }

// Create makes volume name with labels, or returns it as it is if it
// exists (docker's create of an existing name succeeds).
func (s *Store) Create(name string, labels map[string]string) (Volume, error) {
	if err := CheckName(name); err != nil {
		return Volume{}, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		return Volume{}, err
	}
	defer unlock()
	if v, err := s.get(name); err == nil || !errdefs.IsNotFound(err) {
		return v, err
	}
	tmp, err := os.MkdirTemp(s.root, ".tmp-")
	if err != nil {
		return Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	defer os.RemoveAll(tmp) // gone once renamed
	// As docker's local driver: the content directory is world-readable,
	// its owner and mode the image's after the first copy.
	if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
		return Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	if labels == nil {
		labels = map[string]string{}
	}
	v := Volume{
		CreatedAt: time.Now().UTC().Format(time.RFC3339),
		Driver:    "local",
		Labels:    labels,
		Name:      name,
		Scope:     "local",
	}
	b, _ := json.Marshal(v)
	if err := os.WriteFile(filepath.Join(tmp, "volume.json"), b, 0o600); err != nil {
		return Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.Rename(tmp, s.dir(name)); err != nil {
		return Volume{}, fmt.Errorf("create volume %s: %w", name, err)
	}
	v.Mountpoint = s.Mountpoint(name)
	return v, nil
}

// Get returns volume name; errdefs.ErrNotFound if there is none.
func (s *Store) Get(name string) (Volume, error) {
	if err := CheckName(name); err != nil {
		return Volume{}, err
	}
	unlock, err := s.lock(false)
	if err != nil {
		return Volume{}, err
	}
	defer unlock()
	return s.get(name)
}

func (s *Store) get(name string) (Volume, error) {
	b, err := os.ReadFile(filepath.Join(s.dir(name), "volume.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return Volume{}, fmt.Errorf("volume %s: no such volume: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, err)
	}
	var v Volume
	if err := json.Unmarshal(b, &v); err != nil {
		return Volume{}, fmt.Errorf("volume %s: volume.json: %w", name, err)
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	v.Mountpoint = s.Mountpoint(name)
	return v, nil
}

// List returns the volumes, by name.
func (s *Store) List() ([]Volume, error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.list()
}

func (s *Store) list() ([]Volume, error) {
	ents, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("volume store: %w", err)
	}
	var out []Volume
	for _, e := range ents {
		if !e.IsDir() || CheckName(e.Name()) != nil {
			continue // the lock, and what a create or remove has under way
		}
		v, err := s.get(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// UsersFunc tells which containers use each volume, by volume name: the
// store asks under its lock, so no create or remove slips in between.
type UsersFunc func() (map[string][]string, error)

// Remove removes volume name, refused (errdefs.ErrFailedPrecondition,
// naming them) while containers use it.
func (s *Store) Remove(name string, users UsersFunc) error {
	if err := CheckName(name); err != nil {
		return err
	}
	unlock, err := s.lockUsers()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.get(name); err != nil {
		return err
	}
	used, err := users()
	if err != nil {
		return err
	}
	if u := used[name]; len(u) > 0 {
		return fmt.Errorf("remove volume %s: volume is in use by %s: %w", name, strings.Join(u, ", "), errdefs.ErrFailedPrecondition)
	}
	_, err = s.remove(name)
	return err
}

// remove renames volume name away, then removes it, and returns the
// bytes it held. The caller holds the lock exclusively.
func (s *Store) remove(name string) (int64, error) {
	gone, err := os.MkdirTemp(s.root, ".rm-")
	if err != nil {
		return 0, fmt.Errorf("remove volume %s: %w", name, err)
	}
	away := filepath.Join(gone, name)
	if err := os.Rename(s.dir(name), away); err != nil {
		os.Remove(gone)
		return 0, fmt.Errorf("remove volume %s: %w", name, err)
	}
	size := diskUsage(filepath.Join(away, "_data"))
	if err := os.RemoveAll(gone); err != nil {
		return size, fmt.Errorf("remove volume %s: %w", name, err)
	}
	return size, nil
}

// Prune removes the volumes no container uses; docker's prune without
// --all removes anonymous ones only, and with all named ones too. It
// returns their names and the bytes their content held.
func (s *Store) Prune(all bool, users UsersFunc) (removed []string, reclaimed int64, err error) {
	unlock, err := s.lockUsers()
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	vols, err := s.list()
	if err != nil {
		return nil, 0, err
	}
	used, err := users()
	if err != nil {
		return nil, 0, err
	}
	var errs []error
	for _, v := range vols {
		if len(used[v.Name]) > 0 || (!all && !v.Anonymous()) {
			continue
		}
		n, err := s.remove(v.Name)
		reclaimed += n
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, v.Name)
	}
	return removed, reclaimed, errors.Join(errs...)
}

// diskUsage is the bytes the files under dir take.
func diskUsage(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// Reserve is for a container being made that will mount volumes: until
// release, which the caller calls once the container is on record (its
// caller's UsersFunc sees it), no Remove or Prune runs, so none removes a
// volume between its Create and the record. Creates are not held up.
func (s *Store) Reserve() (release func(), err error) {
	return s.flock(".users", false)
}

// lockUsers is what Remove and Prune hold: the users lock exclusively
// (no container is being made), then the store's.
func (s *Store) lockUsers() (func(), error) {
	users, err := s.flock(".users", true)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock(true)
	if err != nil {
		users()
		return nil, err
	}
	return func() { unlock(); users() }, nil
}

// lock takes the store's file lock, exclusive or shared, and returns its
// release.
func (s *Store) lock(exclusive bool) (func(), error) {
	return s.flock(".lock", exclusive)
}

func (s *Store) flock(name string, exclusive bool) (func(), error) {
	unlock, err := flock.Lock(filepath.Join(s.root, name), exclusive)
	if err != nil {
		return nil, fmt.Errorf("volume store: %w", err)
	}
	return unlock, nil
}
