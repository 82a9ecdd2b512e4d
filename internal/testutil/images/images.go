// Package images writes the container images the containerd and CRI tests
// use, without a registry: OCI image layout tarballs (oci-layout,
// index.json, blobs/sha256/: an image manifest, its config and one gzip
// layer) that `ctr image import` and containerd's import API accept.
//
//	busybox  docker.io/library/busybox:vc-test  Debian's static busybox with a
//	                                            link per applet, /etc/passwd,
//	                                            /etc/group
//	pause    registry.k8s.io/pause:vc-test      a static Go program that sleeps
//	                                            until SIGTERM/SIGINT and reaps
//	                                            children (./pause)
//
// The names are only names: nothing is ever pulled. Tarballs are
// deterministic: the same inputs give the same digests.
package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "crypto/sha256" // go-digest needs the hash registered
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil"
)

// Image names. Never pulled: import the tarballs first.
const (
	BusyboxRef = "docker.io/library/busybox:vc-test"
	PauseRef   = "registry.k8s.io/pause:vc-test"
)

// AnnotationImageName is containerd's index annotation naming an image in
// full; `ctr image import` and the import API use it before the OCI ref name.
const AnnotationImageName = "io.containerd.image.name"

// DefaultPath is the PATH the images' configs set.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// epoch is every timestamp in the images (files, config, history), so the
// digests only change when the content does.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Image is a single-layer OCI image for linux on the host's architecture.
type Image struct {
	// Name is the full reference, e.g. docker.io/library/busybox:vc-test.
	Name string
	// Config is the runtime configuration (entrypoint, cmd, env, user).
	Config ocispec.ImageConfig

	layer  []byte        // gzip-compressed tar
	diffID digest.Digest // digest of the uncompressed tar
}

// Blob is a content-addressed piece of an image.
type Blob struct {
	Descriptor ocispec.Descriptor
	Data       []byte
}

// LayerDigest is the compressed layer's descriptor digest; DiffID the
// uncompressed one the config lists.
func (img *Image) LayerDigest() digest.Digest { return digest.FromBytes(img.layer) }

// DiffID is the digest of the layer's uncompressed tar.
func (img *Image) DiffID() digest.Digest { return img.diffID }

// Blobs returns the layer, config and manifest blobs, in that order.
func (img *Image) Blobs() ([]Blob, error) {
	layer := Blob{
		Descriptor: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    digest.FromBytes(img.layer),
			Size:      int64(len(img.layer)),
		},
		Data: img.layer,
	}
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	cfg := ocispec.Image{
		Created:  &epoch,
		Platform: platform,
		Config:   img.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{img.diffID}},
		History: []ocispec.History{{
			Created:   &epoch,
			CreatedBy: "virtcontainers internal/testutil/images",
		}},
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	config := Blob{
		Descriptor: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(cfgData),
			Size:      int64(len(cfgData)),
		},
		Data: cfgData,
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.Descriptor,
		Layers:    []ocispec.Descriptor{layer.Descriptor},
	}
	mData, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("image manifest: %w", err)
	}
	manifest := Blob{
		Descriptor: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest,
			Digest:    digest.FromBytes(mData),
			Size:      int64(len(mData)),
			Platform:  &platform,
		},
		Data: mData,
	}
	return []Blob{layer, config, manifest}, nil
}

// ManifestDescriptor describes the image's manifest, as index.json lists it
// and as containerd reports the image's target after import.
func (img *Image) ManifestDescriptor() (ocispec.Descriptor, error) {
	blobs, err := img.Blobs()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := blobs[2].Descriptor
	d.Annotations = map[string]string{
		AnnotationImageName:       img.Name,
		ocispec.AnnotationRefName: refName(img.Name),
	}
	return d, nil
}

// refName is the tag (or digest) part of a reference, the OCI
// org.opencontainers.image.ref.name convention.
func refName(name string) string {
	if i := strings.LastIndex(name, "@"); i >= 0 {
		return name[i+1:]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[i+1:]
	}
	return "latest"
}

// WriteTo writes the image as an OCI image layout tarball.
func (img *Image) WriteTo(w io.Writer) (int64, error) {
	return img.writeTar(w, false)
}

// dockerManifest is an entry of a docker-archive's manifest.json (what
// `docker save` writes and docker 20.10's `docker load` reads; it loads
// no OCI layout).
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeTar writes the OCI image layout tarball; with docker, a
// manifest.json too, naming the same blobs, so that `docker load` (before
// docker 25, which reads OCI layouts) takes it as a docker-archive.
func (img *Image) writeTar(w io.Writer, docker bool) (int64, error) {
	blobs, err := img.Blobs()
	if err != nil {
		return 0, err
	}
	mdesc, err := img.ManifestDescriptor()
	if err != nil {
		return 0, err
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{mdesc},
	}
	indexData, err := json.Marshal(index)
	if err != nil {
		return 0, fmt.Errorf("image index: %w", err)
	}
	layout, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return 0, fmt.Errorf("oci-layout: %w", err)
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(dirHeader(d)); err != nil {
			return cw.n, fmt.Errorf("write image tar: %w", err)
		}
	}
	files := []struct {
		name string
		data []byte
	}{{ocispec.ImageLayoutFile, layout}, {ocispec.ImageIndexFile, indexData}}
	for _, b := range blobs {
		files = append(files, struct {
			name string
			data []byte
		}{"blobs/sha256/" + b.Descriptor.Digest.Encoded(), b.Data})
	}
	if docker {
		m, err := json.Marshal([]dockerManifest{{
			Config:   "blobs/sha256/" + blobs[1].Descriptor.Digest.Encoded(),
			RepoTags: []string{img.Name},
			Layers:   []string{"blobs/sha256/" + blobs[0].Descriptor.Digest.Encoded()},
		}})
		if err != nil {
			return 0, fmt.Errorf("manifest.json: %w", err)
		}
		files = append(files, struct {
			name string
			data []byte
		}{"manifest.json", m})
	}
	for _, f := range files {
		if err := tw.WriteHeader(fileHeader(f.name, 0o644, int64(len(f.data)))); err != nil {
			return cw.n, fmt.Errorf("write image tar: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return cw.n, fmt.Errorf("write image tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return cw.n, fmt.Errorf("write image tar: %w", err)
	}
	return cw.n, nil
}

// WriteFile writes the image tarball to path (atomically: temp + rename).
func (img *Image) WriteFile(path string) error { return img.writeFile(path, false) }

// WriteDockerFile writes the image tarball with a docker-archive's
// manifest.json too, for docker 20.10's `docker load`.
func (img *Image) WriteDockerFile(path string) error { return img.writeFile(path, true) }

func (img *Image) writeFile(path string, docker bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-")
	if err != nil {
		return fmt.Errorf("write image %s: %w", img.Name, err)
	}
	defer os.Remove(f.Name())
	if _, err := img.writeTar(f, docker); err != nil {
		f.Close()
		return fmt.Errorf("write image %s: %w", img.Name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write image %s: %w", img.Name, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write image %s: %w", img.Name, err)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func dirHeader(name string) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
}

func fileHeader(name string, mode int64, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: epoch, Format: tar.FormatPAX}
}

// FromDir makes an image whose single layer is the tree at root: every
// entry owned by root, timestamps fixed, entries in lexical order.
func FromDir(name, root string, config ocispec.ImageConfig) (*Image, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = epoch, time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer from %s: %w", root, err)
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer from %s: %w", root, err)
	}
	return fromTar(name, raw.Bytes(), config)
}

// File is one entry of a layer built with FromFiles.
type File struct {
	Path string // inside the image, without a leading slash
	Mode int64
	Data []byte
}

// FromFiles makes an image whose single layer holds files (and the
// directories above them).
func FromFiles(name string, files []File, config ocispec.ImageConfig) (*Image, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	written := map[string]bool{}
	for _, f := range files {
		p := strings.TrimPrefix(f.Path, "/")
		var parents []string
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if written[d] {
				continue
			}
			written[d] = true
			if err := tw.WriteHeader(dirHeader(d + "/")); err != nil {
				return nil, fmt.Errorf("layer: %w", err)
			}
		}
		if err := tw.WriteHeader(fileHeader(p, f.Mode, int64(len(f.Data)))); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return fromTar(name, raw.Bytes(), config)
}

func fromTar(name string, raw []byte, config ocispec.ImageConfig) (*Image, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	// No name, zero mtime: the header is the same every time.
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip layer: %w", err)
	}
	return &Image{Name: name, Config: config, layer: gz.Bytes(), diffID: digest.FromBytes(raw)}, nil
}

// Busybox builds the busybox test image from Debian's busybox-static (see
// internal/rootfs.BuildBusybox): `sh` by default.
func Busybox() (*Image, error) {
	tmp, err := os.MkdirTemp("", "vc-busybox-image-")
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := rootfs.BuildBusybox(tmp); err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	// BuildBusybox's os.Chmod(tmp, 0o1777) drops the sticky bit (os.Chmod
	// takes fs.ModeSticky, not 0o1000); an image's /tmp needs it.
	if err := os.Chmod(filepath.Join(tmp, "tmp"), 0o777|os.ModeSticky); err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	return FromDir(BusyboxRef, tmp, ocispec.ImageConfig{
		Env:        []string{DefaultPath},
		Cmd:        []string{"sh"},
		WorkingDir: "/",
	})
}

// Pause makes the pause image from a pause binary (see BuildPause).
func Pause(binary string) (*Image, error) {
	b, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	return FromFiles(PauseRef, []File{{Path: "pause", Mode: 0o755, Data: b}}, ocispec.ImageConfig{
		// As Kubernetes' own pause image: nobody-ish numeric user, no passwd.
		User:       "65535:65535",
		Env:        []string{DefaultPath},
		Entrypoint: []string{"/pause"},
		WorkingDir: "/",
	})
}

var (
	pauseOnce sync.Once
	pauseBin  string
	pauseErr  error
)

// BuildPause builds the static pause program once per process (go build,
// CGO_ENABLED=0) into bin/test and returns its path.
func BuildPause() (string, error) {
	pauseOnce.Do(func() {
		pauseBin, pauseErr = testutil.Build("pause", "./internal/testutil/images/pause", []string{"CGO_ENABLED=0"}, "-trimpath", "-ldflags", "-s -w")
		if pauseErr != nil {
			pauseErr = fmt.Errorf("build pause: %w", pauseErr)
		}
	})
	return pauseBin, pauseErr
}

// WriteAll writes busybox.tar and pause.tar into dir and returns their
// paths, keyed by image name.
func WriteAll(dir string) (map[string]string, error) {
	pb, err := BuildPause()
	if err != nil {
		return nil, err
	}
	pause, err := Pause(pb)
	if err != nil {
		return nil, err
	}
	busybox, err := Busybox()
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for file, img := range map[string]*Image{"busybox.tar": busybox, "pause.tar": pause} {
		p := filepath.Join(dir, file)
		if err := img.WriteFile(p); err != nil {
			return nil, err
		}
		paths[img.Name] = p
	}
	return paths, nil
}
