package imagestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/mountinfo"
)

// Remove removes the name ref is (or, for an image id, every name of that
// image) and then whatever no image refers to any more. usedBy, if not
// nil, names the containers that use an image; an image in use is
// refused (errdefs.ErrFailedPrecondition, naming them) unless force.
// Forced, only the names go: the blobs and layers of an image a container
// uses (KeepInUse) stay until the container is removed and a later
// collection finds them unused, and a layer some overlay has mounted
// stays until one finds it unmounted. It returns the names removed.
func (s *Store) Remove(ref string, force bool, usedBy func(*Image) []string) ([]string, error) {
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	img, err := s.get(ix, ref)
	if err != nil {
		return nil, err
	}
	if usedBy != nil && !force {
		if users := usedBy(img); len(users) > 0 {
			return nil, fmt.Errorf("image %s (%s) is used by container(s) %s: remove them first or use -f: %w",
				ref, shortID(img.ID), strings.Join(users, ", "), errdefs.ErrFailedPrecondition)
		}
	}
	var names []string
	if full, err := Normalize(ref); err == nil && full == img.Name {
		names = []string{img.Name}
	} else {
		// By id: every name of the image.
		for nm, e := range ix.Images {
			if e.Digest == img.Digest {
				names = append(names, nm)
			}
		}
	}
	for _, nm := range names {
		delete(ix.Images, nm)
	}
	if err := s.writeIndex(ix); err != nil {
		return nil, err
	}
	if err := s.gc(ix); err != nil {
		return names, fmt.Errorf("image %s removed, but: %w", ref, err)
	}
	return names, nil
}

// Prune collects what no image and no container uses any more (a
// container's image whose name went with rmi -f, once the container is
// removed). It does not wait: if another holds the store's lock, Prune
// returns nil and leaves it to the next pull, load or rmi, which collect
// as they end.
func (s *Store) Prune() error {
	unlock, ok, err := s.tryLock()
	if err != nil || !ok {
		return err
	}
	defer unlock()
	ix, err := s.readIndex()
	if err != nil {
		return err
	}
	return s.gc(ix)
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// gc removes the blobs and layers no image of ix and no container's
// image (KeepInUse) refers to, except layers an overlay has mounted. The
// caller holds the lock exclusively.
func (s *Store) gc(ix *index) error {
	blobs, layers := map[string]bool{}, map[string]bool{}
	keep := func(img *Image) {
		blobs[hexOf(img.Digest)], blobs[hexOf(img.ID)] = true, true
		for _, l := range img.Layers {
			blobs[hexOf(l.Digest)], layers[hexOf(l.DiffID)] = true, true
		}
	}
	for nm, e := range ix.Images {
		img, err := s.load(nm, e)
		if err != nil {
			// Keep everything rather than guess what it needs.
			return fmt.Errorf("garbage collection skipped: %w", err)
		}
		keep(img)
	}
	if s.inUse != nil {
		digests, err := s.inUse()
		if err != nil {
			return fmt.Errorf("garbage collection skipped: the images containers use: %w", err)
		}
		for _, d := range digests {
			img, err := s.GetDigest(d, d)
			if errdefs.IsNotFound(err) {
				continue // collected before (by a vc without this)
			}
			if err != nil {
				return fmt.Errorf("garbage collection skipped: %w", err)
			}
			keep(img)
		}
	}
	var errs []error
	dir := filepath.Join(s.root, "blobs", "sha256")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !blobs[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	mounted := mountedLowers()
	dir = filepath.Join(s.root, "layers")
	ents, _ = os.ReadDir(dir)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if layers[e.Name()] {
			continue
		}
		if mounted(p) {
			slog.Debug("image store: layer kept, an overlay has it mounted", "layer", e.Name())
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mountedLowers tells whether an overlay mount of this thread's mount
// table has dir as a lower directory. If the table cannot be read every
// directory counts as mounted.
func mountedLowers() func(dir string) bool {
	infos, err := mountinfo.Read(mountinfo.Thread)
	if err != nil {
		slog.Warn("image store: mount table unreadable, keeping every layer", "err", err)
		return func(string) bool { return true }
	}
	// The paths an overlay was given, and what they link to (vc mounts
	// images of many layers through short links).
	paths := map[string]bool{}
	for _, in := range infos {
		if in.FSType != "overlay" {
			continue
		}
		for _, f := range strings.FieldsFunc(in.SuperOpts, func(r rune) bool { return r == ',' || r == ':' || r == '=' }) {
			if strings.HasPrefix(f, "/") {
				paths[f] = true
				if t, err := filepath.EvalSymlinks(f); err == nil {
					paths[t] = true
				}
			}
		}
	}
	return func(dir string) bool {
		if paths[dir] {
			return true
		}
		t, err := filepath.EvalSymlinks(dir)
		return err == nil && paths[t]
	}
}
