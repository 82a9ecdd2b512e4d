package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Load stores the images of the tarball at path: a docker archive (docker
// save, podman save; its manifest.json's RepoTags name the images) or an
// OCI image layout (podman save --format oci-archive; names from the
// index's io.containerd.image.name or org.opencontainers.image.ref.name
// annotations). It returns the images stored.
func (s *Store) Load(ctx context.Context, path string, progress func(Progress)) ([]*Image, error) {
	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	s.cleanTmp()
	entries, err := tarNames(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	switch {
	case entries["manifest.json"]:
		return s.loadDockerArchive(ctx, path, progress)
	case entries["oci-layout"] && entries["index.json"]:
		return s.loadOCIArchive(ctx, path, progress)
	}
	return nil, fmt.Errorf("load %s: neither a docker archive (no manifest.json) nor an OCI layout (no oci-layout and index.json): %w", path, errdefs.ErrInvalidArgument)
}

// tarNames lists the regular files of a tar.
func tarNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar: %w", err)
		}
		names[strings.TrimPrefix(filepath.Clean("/"+hdr.Name), "/")] = true
	}
}

func (s *Store) loadDockerArchive(ctx context.Context, path string, progress func(Progress)) ([]*Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load %s: manifest.json: %w", path, err)
	}
	var out []*Image
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			return out, fmt.Errorf("load %s: image %d (%s) has no name (RepoTags): untagged images are not supported: %w", path, i+1, d.Config, errdefs.ErrNotImplemented)
		}
		for _, t := range d.RepoTags {
			tag, err := name.NewTag(t)
			if err != nil {
				return out, fmt.Errorf("load %s: RepoTags %q: %w", path, t, err)
			}
			img, err := tarball.Image(opener, &tag)
			if err != nil {
				return out, fmt.Errorf("load %s: %s: %w", path, t, err)
			}
			stored, err := s.put(ctx, tag.Name(), img, progress)
			if err != nil {
				return out, fmt.Errorf("load %s: %w", path, err)
			}
			out = append(out, stored)
		}
	}
	return out, nil
}

func (s *Store) loadOCIArchive(ctx context.Context, path string, progress func(Progress)) ([]*Image, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := extractLayout(path, dir); err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("load %s: index.json: %w", path, err)
	}
	var out []*Image
	for i, d := range im.Manifests {
		nm := d.Annotations["io.containerd.image.name"]
		if nm == "" {
			nm = d.Annotations["org.opencontainers.image.ref.name"]
		}
		ref, err := name.ParseReference(nm, name.StrictValidation)
		if nm == "" || err != nil || !strings.ContainsAny(nm, "/:@") {
			return out, fmt.Errorf("load %s: manifest %d (%s) has no full image name (annotation io.containerd.image.name or org.opencontainers.image.ref.name, got %q): %w", path, i+1, d.Digest, nm, errdefs.ErrInvalidArgument)
		}
		img, err := pickImage(idx, d)
		if err != nil {
			return out, fmt.Errorf("load %s: %s: %w", path, nm, err)
		}
		stored, err := s.put(ctx, ref.Name(), img, progress)
		if err != nil {
			return out, fmt.Errorf("load %s: %w", path, err)
		}
		out = append(out, stored)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("load %s: no image in index.json: %w", path, errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// pickImage is the image descriptor d names: itself, or linux/amd64's of
// the index it is.
func pickImage(idx v1.ImageIndex, d v1.Descriptor) (v1.Image, error) {
	if !d.MediaType.IsIndex() {
		return idx.Image(d.Digest)
	}
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, c := range cm.Manifests {
		if c.MediaType.IsImage() && (c.Platform == nil || (c.Platform.OS == "linux" && c.Platform.Architecture == "amd64")) {
			return child.Image(c.Digest)
		}
	}
	return nil, fmt.Errorf("no linux/amd64 image in index %s: %w", d.Digest, errdefs.ErrNotFound)
}

// extractLayout writes an OCI layout tar's files (oci-layout, index.json,
// blobs/ALG/HEX) under dir; nothing else is taken.
func extractLayout(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(filepath.Clean("/"+hdr.Name), "/")
		parts := strings.Split(rel, "/")
		ok := rel == "oci-layout" || rel == "index.json" || (len(parts) == 3 && parts[0] == "blobs" && isHex(parts[2]))
		if hdr.Typeflag != tar.TypeReg || !ok {
			continue
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// Save writes the images refs name to path as a docker archive, which
// docker load and podman load read (and vc load). The file appears only
// once complete.
func (s *Store) Save(ctx context.Context, path string, refs []string) error {
	unlock, err := s.lock(false)
	if err != nil {
		return err
	}
	defer unlock()
	ix, err := s.readIndex()
	if err != nil {
		return err
	}
	images := map[name.Reference]v1.Image{}
	for _, ref := range refs {
		img, err := s.get(ix, ref)
		if err != nil {
			return err
		}
		// Under its name, whether asked for by name or by id (an image
		// stored by digest is written untagged, as docker does).
		r, err := name.ParseReference(img.Name)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Name, err)
		}
		v, err := partial.CompressedToImage(&storedImage{s: s, img: img})
		if err != nil {
			return fmt.Errorf("image %s: %w", ref, err)
		}
		images[r] = v
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tarball.MultiRefWrite(images, &ctxWriter{ctx, tmp}); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	ok = true
	return nil
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// storedImage is an image of the store as go-containerregistry's
// partial.CompressedImageCore.
type storedImage struct {
	s   *Store
	img *Image
}

func (i *storedImage) RawConfigFile() ([]byte, error) {
	return os.ReadFile(i.s.blobPath(i.img.ID))
}

func (i *storedImage) MediaType() (types.MediaType, error) {
	m, err := v1.ParseManifest(bytes.NewReader(i.img.Raw))
	if err != nil {
		return "", err
	}
	if m.MediaType == "" {
		return types.OCIManifestSchema1, nil
	}
	return m.MediaType, nil
}

func (i *storedImage) RawManifest() ([]byte, error) { return i.img.Raw, nil }

func (i *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range i.img.Layers {
		if l.Digest == h.String() {
			return &storedLayer{s: i.s, l: l}, nil
		}
	}
	return nil, fmt.Errorf("image %s: no layer %s: %w", i.img.Name, h, errdefs.ErrNotFound)
}

type storedLayer struct {
	s *Store
	l Layer
}

func (l *storedLayer) Digest() (v1.Hash, error)           { return v1.NewHash(l.l.Digest) }
func (l *storedLayer) Compressed() (io.ReadCloser, error) { return os.Open(l.s.blobPath(l.l.Digest)) }
func (l *storedLayer) Size() (int64, error)               { return l.l.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.l.MediaType), nil
}
