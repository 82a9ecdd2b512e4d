// Package imagestore keeps OCI and docker images on the host for vc:
// pulled from a registry, loaded from or saved to a tarball, and run as an
// overlay of their layers.
//
// Everything is content-addressed under one root directory:
//
//	ROOT/blobs/sha256/HEX   manifests, configs and layer blobs as fetched,
//	                        each checked against its digest
//	ROOT/layers/HEX         a layer unpacked once, by its diff_id, as an
//	                        overlayfs lower directory (whiteouts are 0/0
//	                        character devices, opaque directories carry
//	                        trusted.overlay.opaque); shared by every image
//	                        with that layer
//	ROOT/index.json         image names (registry/repository:tag) to
//	                        manifest digests
//	ROOT/tmp                what a pull or load stages before it commits
//	ROOT/lock               the store's file lock
//
// A pull or load stages every blob and layer in ROOT/tmp and moves them in,
// and names the image, only once every digest has been checked: a failure
// leaves nothing. Writers (pull, load, remove) hold the lock exclusively,
// readers (save, a container's mount) shared, so concurrent vc processes
// do not corrupt the store; a pull of one image makes a run of another
// wait until it is done.
package imagestore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/virtcontainers/vc/internal/flock"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/atomicfile"
)

// ErrDigestMismatch is what content that does not match its digest fails
// with.
var ErrDigestMismatch = errors.New("digest mismatch")

// Store is an image store under a root directory.
type Store struct {
	root  string
	inUse func() ([]string, error)
}

// KeepInUse tells the store which images containers use, by manifest
// digest: garbage collection keeps their blobs and layers even once no
// name points at them (rmi -f, or a pull that moves a name), as docker
// keeps a container's image until the container is removed. If inUse
// fails, nothing is collected.
func (s *Store) KeepInUse(inUse func() ([]string, error)) { s.inUse = inUse }

// Open opens (creating it if needed) the store under root.
func Open(root string) (*Store, error) {
	for _, d := range []string{filepath.Join(root, "blobs", "sha256"), filepath.Join(root, "layers"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &Store{root: root}, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// LayerDir is where the layer of diffID is unpacked.
func (s *Store) LayerDir(diffID string) string {
	return filepath.Join(s.root, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

// lock takes the store's file lock, exclusive or shared, and returns its
// release.
func (s *Store) lock(exclusive bool) (func(), error) {
	unlock, err := flock.Lock(filepath.Join(s.root, "lock"), exclusive)
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return unlock, nil
}

// tryLock takes the store's lock exclusively if no one holds it; ok is
// false if someone does.
func (s *Store) tryLock() (unlock func(), ok bool, err error) {
	unlock, ok, err = flock.TryLock(filepath.Join(s.root, "lock"))
	if err != nil {
		return nil, false, fmt.Errorf("image store: %w", err)
	}
	return unlock, ok, nil
}

// Image is an image of the store.
type Image struct {
	// Name is the full reference it is known by
	// (index.docker.io/library/busybox:latest).
	Name string `json:"name"`
	// Digest is its manifest's, ID its config's (docker's image id).
	Digest string `json:"digest"`
	ID     string `json:"id"`
	// Stored is when it was pulled or loaded under this name.
	Stored time.Time `json:"stored"`
	// Size is its layer blobs' total size (compressed).
	Size   int64           `json:"size"`
	Layers []Layer         `json:"layers"`
	Config *v1.ConfigFile  `json:"-"`
	Raw    json.RawMessage `json:"-"` // the manifest
}

// Layer is a layer of an image: its blob and where it is unpacked.
type Layer struct {
	Digest    string `json:"digest"`
	DiffID    string `json:"diff_id"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"`
}

// ShortName is a name as docker shows it: without the default
// registry and library/.
func ShortName(full string) string {
	s := strings.TrimPrefix(full, name.DefaultRegistry+"/")
	return strings.TrimPrefix(s, "library/")
}

// Normalize turns what a person typed ("busybox", "127.0.0.1:5000/a:v1")
// into the full name the store keys images by.
func Normalize(ref string) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return r.Name(), nil
}

// index is ROOT/index.json.
type index struct {
	Images map[string]indexEntry `json:"images"`
}

type indexEntry struct {
	Digest string    `json:"digest"`
	Stored time.Time `json:"stored"`
}

func (s *Store) readIndex() (*index, error) {
	ix := &index{Images: map[string]indexEntry{}}
	b, err := os.ReadFile(filepath.Join(s.root, "index.json"))
	if os.IsNotExist(err) {
		return ix, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	if err := json.Unmarshal(b, ix); err != nil {
		return nil, fmt.Errorf("image index %s: %w", filepath.Join(s.root, "index.json"), err)
	}
	if ix.Images == nil {
		ix.Images = map[string]indexEntry{}
	}
	return ix, nil
}

// writeIndex replaces the index atomically; the caller holds the lock
// exclusively.
func (s *Store) writeIndex(ix *index) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.root, "index.json"), b, 0o600)
}

// load reads the image a name points at from its blobs.
func (s *Store) load(nm string, e indexEntry) (*Image, error) {
	raw, err := os.ReadFile(s.blobPath(e.Digest))
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest %s: %w", ShortName(nm), e.Digest, err)
	}
	m, err := v1.ParseManifest(strings.NewReader(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest %s: %w", ShortName(nm), e.Digest, err)
	}
	cb, err := os.ReadFile(s.blobPath(m.Config.Digest.String()))
	if err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", ShortName(nm), m.Config.Digest, err)
	}
	cfg, err := v1.ParseConfigFile(strings.NewReader(string(cb)))
	if err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", ShortName(nm), m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids", ShortName(nm), len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := &Image{Name: nm, Digest: e.Digest, ID: m.Config.Digest.String(), Stored: e.Stored, Config: cfg, Raw: raw}
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, Layer{Digest: l.Digest.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: l.Size, MediaType: string(l.MediaType)})
		img.Size += l.Size
	}
	return img, nil
}

// GetDigest returns the image of manifest digest, named nm, whether or not
// a name of the store points at it still: a container's image, kept while
// the container is (see KeepInUse). An image whose blobs are gone is
// errdefs.ErrNotFound.
func (s *Store) GetDigest(nm, digest string) (*Image, error) {
	if _, err := v1.NewHash(digest); err != nil {
		return nil, fmt.Errorf("image %s: digest %q: %w: %w", ShortName(nm), digest, err, errdefs.ErrInvalidArgument)
	}
	img, err := s.load(nm, indexEntry{Digest: digest})
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	return img, err
}

// List returns the store's images by name.
func (s *Store) List() ([]*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []*Image
	for nm, e := range ix.Images {
		img, err := s.load(nm, e)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Get returns the image ref names: a reference (busybox, a/b:tag,
// host:port/a@sha256:...) or the start of an image id (config digest, at
// least 4 hex digits, "sha256:" optional). An image the store does not
// have is errdefs.ErrNotFound, named.
func (s *Store) Get(ref string) (*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	return s.get(ix, ref)
}

func (s *Store) get(ix *index, ref string) (*Image, error) {
	if full, err := name.ParseReference(ref); err == nil {
		if e, ok := ix.Images[full.Name()]; ok {
			return s.load(full.Name(), e)
		}
	}
	if id := strings.TrimPrefix(ref, "sha256:"); len(id) >= 4 && isHex(id) {
		var found *Image
		for nm, e := range ix.Images {
			img, err := s.load(nm, e)
			if err != nil {
				return nil, err
			}
			if strings.HasPrefix(strings.TrimPrefix(img.ID, "sha256:"), id) {
				if found != nil && found.ID != img.ID {
					return nil, fmt.Errorf("image id %q: ambiguous (%s and %s): %w", ref, found.ID, img.ID, errdefs.ErrInvalidArgument)
				}
				found = img
			}
		}
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("image %q: not in the store (vc pull or vc load it first): %w", ref, errdefs.ErrNotFound)
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s + strings.Repeat("0", len(s)%2))
	return err == nil
}

// Acquire prepares to mount img: it takes the store's lock shared, so that
// no layer goes while a container's overlay is mounted over it, checks
// that every layer is there, and returns the layer directories top first
// (overlayfs's lowerdir order) and the lock's release. A mounted layer is
// never removed (Remove looks at the mount table), so release once the
// overlay is mounted.
func (s *Store) Acquire(img *Image) ([]string, func(), error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, nil, err
	}
	dirs := make([]string, 0, len(img.Layers))
	for i := len(img.Layers) - 1; i >= 0; i-- {
		d := s.LayerDir(img.Layers[i].DiffID)
		if _, err := os.Stat(d); err != nil {
			unlock()
			return nil, nil, fmt.Errorf("image %s: layer %s: %w", ShortName(img.Name), img.Layers[i].DiffID, err)
		}
		dirs = append(dirs, d)
	}
	if len(dirs) == 0 {
		unlock()
		return nil, nil, fmt.Errorf("image %s: no layers: %w", ShortName(img.Name), errdefs.ErrInvalidArgument)
	}
	return dirs, unlock, nil
}

// sha256Hex is the "sha256:HEX" digest of b.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Lookup finds the file rel (e.g. "etc/passwd") in a stack of layer
// directories, top first, as the overlay of them shows it: the topmost
// layer that has it, unless a layer above deleted it (a whiteout) or made
// a directory on its path opaque. It returns the file's path in its
// layer, or false.
func Lookup(dirs []string, rel string) (string, bool) {
	rel = strings.TrimPrefix(filepath.Clean("/"+rel), "/")
	for _, d := range dirs {
		p := filepath.Join(d, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
				return "", false // a whiteout
			}
			return p, true
		}
		// An opaque directory on the way hides the layers below.
		for dir := filepath.Dir(rel); dir != "." && dir != "/"; dir = filepath.Dir(dir) {
			buf := make([]byte, 1)
			if n, err := unix.Getxattr(filepath.Join(d, dir), opaqueXattr, buf); err == nil && n == 1 && buf[0] == 'y' {
				return "", false
			}
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(d, dir), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
				return "", false
			}
		}
	}
	return "", false
}
