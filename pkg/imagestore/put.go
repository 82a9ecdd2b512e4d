package imagestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Progress is what a pull or load reports of a layer.
type Progress struct {
	Image  string // the image's full name
	Layer  string // the layer blob's digest
	Index  int    // of Count layers, from 0
	Count  int
	Status string // "exists", "downloading", "unpacking", "verifying" or "done"
	Done   int64  // bytes of the blob so far
	Total  int64  // the blob's size
}

// Put stores img under the full name nm (see Normalize): it copies the
// blobs the store lacks, checking each against its digest, unpacks the
// layers it lacks, checking their diff_ids, and then, all checked, moves
// them in and names the image; on any failure nothing is left. progress,
// if not nil, hears of each layer.
func (s *Store) Put(ctx context.Context, nm string, img v1.Image, progress func(Progress)) (*Image, error) {
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.cleanTmp()
	return s.put(ctx, nm, img, progress)
}

// put is Put under the lock, held exclusively.
func (s *Store) put(ctx context.Context, nm string, img v1.Image, progress func(Progress)) (*Image, error) {
	if progress == nil {
		progress = func(Progress) {}
	}
	stage, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "put-")
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ShortName(nm), err)
	}
	defer os.RemoveAll(stage)

	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", ShortName(nm), err)
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", ShortName(nm), err)
	}
	if mt != types.DockerManifestSchema2 && mt != types.OCIManifestSchema1 {
		return nil, fmt.Errorf("image %s: manifest media type %q: want a docker schema 2 or OCI image manifest: %w", ShortName(nm), mt, errdefs.ErrNotImplemented)
	}
	m, err := v1.ParseManifest(bytes.NewReader(rawManifest))
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", ShortName(nm), err)
	}
	// Digests name files of the store: each must be a sha256 (a
	// descriptor without one parses as the zero hash).
	if m.Config.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("image %s: manifest config.digest %q: want a sha256 digest: %w", ShortName(nm), m.Config.Digest, errdefs.ErrInvalidArgument)
	}
	for i, l := range m.Layers {
		if l.Digest.Algorithm != "sha256" {
			return nil, fmt.Errorf("image %s: manifest layers[%d].digest %q: want a sha256 digest: %w", ShortName(nm), i, l.Digest, errdefs.ErrInvalidArgument)
		}
	}
	digest := sha256Hex(rawManifest)
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", ShortName(nm), m.Config.Digest, err)
	}
	if got := sha256Hex(rawConfig); got != m.Config.Digest.String() {
		return nil, fmt.Errorf("image %s: config is %s, the manifest says %s: %w", ShortName(nm), got, m.Config.Digest, ErrDigestMismatch)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", ShortName(nm), m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids in its config: %w", ShortName(nm), len(m.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("image %s: no layers: %w", ShortName(nm), errdefs.ErrInvalidArgument)
	}

	// What to move in once everything is checked: staged path -> final.
	type move struct{ from, to string }
	var moves []move
	staged := map[string]string{} // blob digest -> staged path
	stageBlob := func(digest string, b []byte) error {
		if _, err := os.Stat(s.blobPath(digest)); err == nil {
			return nil
		}
		p := filepath.Join(stage, "blob-"+hexOf(digest))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
		moves = append(moves, move{p, s.blobPath(digest)})
		return nil
	}
	// A blob and a layer directory both in the store prove nothing about
	// each other: the pair (blob digest, diff_id) is trusted only if an
	// image already named has it (its put checked it) or once the blob's
	// uncompressed stream has been hashed here.
	checked, err := s.checkedPairs()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", ShortName(nm), err)
	}
	stagedLayers := map[string]bool{} // diff_ids unpacked in stage
	for i, desc := range m.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ld, diffID := desc.Digest.String(), cfg.RootFS.DiffIDs[i].String()
		pair := layerPair{ld, diffID}
		p := Progress{Image: nm, Layer: ld, Index: i, Count: len(m.Layers), Total: desc.Size}
		blob := s.blobPath(ld)
		_, berr := os.Stat(blob)
		if sp, ok := staged[ld]; ok {
			blob, berr = sp, nil
		}
		_, lerr := os.Stat(s.LayerDir(diffID))
		if stagedLayers[diffID] {
			lerr = nil // twice in this image: unpacked already
		}
		if berr == nil && lerr == nil && checked[pair] {
			p.Status, p.Done = "exists", desc.Size
			progress(p)
			continue
		}
		if berr != nil {
			layer, err := img.LayerByDigest(desc.Digest)
			if err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", ShortName(nm), ld, err)
			}
			sp := filepath.Join(stage, "blob-"+hexOf(ld))
			if err := fetchBlob(ctx, layer, sp, ld, desc.Size, func(n int64) {
				p.Status, p.Done = "downloading", n
				progress(p)
			}); err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", ShortName(nm), ld, err)
			}
			moves = append(moves, move{sp, blob})
			staged[ld], blob = sp, sp
		}
		start := time.Now()
		if lerr != nil {
			p.Status, p.Done = "unpacking", desc.Size
			progress(p)
			dir := filepath.Join(stage, "layer-"+hexOf(diffID))
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, err
			}
			if err := unpackLayer(blob, dir, diffID); err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", ShortName(nm), ld, err)
			}
			slog.Debug("layer unpacked", "image", nm, "layer", ld, "diff_id", diffID, "took", time.Since(start))
			moves = append(moves, move{dir, s.LayerDir(diffID)})
			stagedLayers[diffID] = true
		} else if !checked[pair] {
			// The layer is unpacked already (by another image, or by
			// this one's other blob of it), but these bytes are new to
			// it: they must still be that layer.
			p.Status, p.Done = "verifying", desc.Size
			progress(p)
			if err := checkDiffID(blob, diffID); err != nil {
				return nil, fmt.Errorf("image %s: layer %s: %w", ShortName(nm), ld, err)
			}
			slog.Debug("layer blob checked", "image", nm, "layer", ld, "diff_id", diffID, "took", time.Since(start))
		}
		checked[pair] = true
		p.Status, p.Done = "done", desc.Size
		progress(p)
	}
	if err := stageBlob(m.Config.Digest.String(), rawConfig); err != nil {
		return nil, fmt.Errorf("image %s: %w", ShortName(nm), err)
	}
	if err := stageBlob(digest, rawManifest); err != nil {
		return nil, fmt.Errorf("image %s: %w", ShortName(nm), err)
	}

	// Everything checked: move in, then name the image. What is in the
	// store already stays as it is: it was checked when it came.
	for _, mv := range moves {
		if err := unix.Renameat2(unix.AT_FDCWD, mv.from, unix.AT_FDCWD, mv.to, unix.RENAME_NOREPLACE); err != nil {
			if _, serr := os.Stat(mv.to); serr != nil {
				return nil, fmt.Errorf("image %s: %s: %w", ShortName(nm), mv.to, err)
			}
		}
	}
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	ix.Images[nm] = indexEntry{Digest: digest, Stored: time.Now().UTC()}
	if err := s.writeIndex(ix); err != nil {
		return nil, fmt.Errorf("image %s: %w", ShortName(nm), err)
	}
	// The image this name pointed at before may now be unreferenced.
	if err := s.gc(ix); err != nil {
		slog.Warn("image store: garbage collection", "err", err)
	}
	return s.load(nm, ix.Images[nm])
}

// layerPair is a layer blob's digest and the diff_id of its uncompressed
// stream.
type layerPair struct{ digest, diffID string }

// checkedPairs are the layer pairs of the images named in the store: each
// was checked when its image was put. An image that does not load
// vouches for nothing. The caller holds the lock.
func (s *Store) checkedPairs() (map[layerPair]bool, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	pairs := map[layerPair]bool{}
	for nm, e := range ix.Images {
		img, err := s.load(nm, e)
		if err != nil {
			slog.Warn("image store: image unreadable, its layers will be checked again", "image", nm, "err", err)
			continue
		}
		for _, l := range img.Layers {
			pairs[layerPair{l.Digest, l.DiffID}] = true
		}
	}
	return pairs, nil
}

func hexOf(digest string) string { return digest[len("sha256:"):] }

// fetchBlob copies a layer's compressed stream to path, checking its size
// and digest (nothing is left at path if they do not match).
func fetchBlob(ctx context.Context, layer v1.Layer, path, digest string, size int64, progress func(int64)) (err error) {
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	h := sha256.New()
	cw := &countWriter{ctx: ctx, progress: progress}
	n, err := io.Copy(io.MultiWriter(f, h, cw), rc)
	if err != nil {
		return fmt.Errorf("reading the blob: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("content is %s (%d bytes), want %s: %w", got, n, digest, ErrDigestMismatch)
	}
	if size > 0 && n != size {
		return fmt.Errorf("%d bytes, the manifest says %d: %w", n, size, ErrDigestMismatch)
	}
	return f.Sync()
}

// countWriter reports the bytes written through it, at most ten times a
// second, and stops the copy once ctx ends.
type countWriter struct {
	ctx      context.Context
	n        int64
	last     time.Time
	progress func(int64)
}

func (c *countWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	c.n += int64(len(p))
	if now := time.Now(); now.Sub(c.last) >= 100*time.Millisecond {
		c.last = now
		c.progress(c.n)
	}
	return len(p), nil
}

// cleanTmp removes what a killed pull or load left; the caller holds the
// lock exclusively, so no other is staging.
func (s *Store) cleanTmp() {
	ents, _ := os.ReadDir(filepath.Join(s.root, "tmp"))
	for _, e := range ents {
		os.RemoveAll(filepath.Join(s.root, "tmp", e.Name()))
	}
}
