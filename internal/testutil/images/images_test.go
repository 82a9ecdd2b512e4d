package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/virtcontainers/vc/internal/testenv"
)

// layout is an OCI image layout tarball read back.
type layout struct {
	files map[string][]byte
	order []string
}

func readLayout(t *testing.T, b []byte) *layout {
	t.Helper()
	l := &layout{files: map[string][]byte{}}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 %v", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime, epoch)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read %s: %v", hdr.Name, err)
		}
		if _, dup := l.files[hdr.Name]; dup {
			t.Errorf("%s twice in the tarball", hdr.Name)
		}
		l.files[hdr.Name] = data
		l.order = append(l.order, hdr.Name)
	}
	return l
}

// blob returns the blob a descriptor points at, checking digest and size.
func (l *layout) blob(t *testing.T, d ocispec.Descriptor) []byte {
	t.Helper()
	if err := d.Digest.Validate(); err != nil {
		t.Fatalf("descriptor digest %q: %v", d.Digest, err)
	}
	data, ok := l.files["blobs/sha256/"+d.Digest.Encoded()]
	if !ok {
		t.Fatalf("blob %s (%s) missing", d.Digest, d.MediaType)
	}
	if got := digest.FromBytes(data); got != d.Digest {
		t.Errorf("blob %s has digest %s", d.Digest, got)
	}
	if int64(len(data)) != d.Size {
		t.Errorf("blob %s (%s) is %d bytes, descriptor says %d", d.Digest, d.MediaType, len(data), d.Size)
	}
	return data
}

// check verifies a tarball end to end and returns the manifest descriptor,
// the config and the layer's files (name -> header).
func check(t *testing.T, b []byte, wantName string) (ocispec.Descriptor, ocispec.Image, map[string]*tar.Header) {
	t.Helper()
	l := readLayout(t, b)
	var lay ocispec.ImageLayout
	if err := json.Unmarshal(l.files["oci-layout"], &lay); err != nil || lay.Version != "1.0.0" {
		t.Fatalf("oci-layout %q: %v", l.files["oci-layout"], err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(l.files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if index.SchemaVersion != 2 || index.MediaType != ocispec.MediaTypeImageIndex || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %s", l.files["index.json"])
	}
	md := index.Manifests[0]
	if md.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type %q", md.MediaType)
	}
	if got := md.Annotations[AnnotationImageName]; got != wantName {
		t.Errorf("index names the image %q, want %q", got, wantName)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != runtime.GOARCH {
		t.Errorf("manifest platform %+v", md.Platform)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(l.blob(t, md), &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.SchemaVersion != 2 || m.Config.MediaType != ocispec.MediaTypeImageConfig || len(m.Layers) != 1 {
		t.Fatalf("manifest: %+v", m)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(l.blob(t, m.Config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH || cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != 1 {
		t.Fatalf("config: %+v", cfg)
	}
	if m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("layer media type %q", m.Layers[0].MediaType)
	}
	zr, err := gzip.NewReader(bytes.NewReader(l.blob(t, m.Layers[0])))
	if err != nil {
		t.Fatalf("layer gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer gunzip: %v", err)
	}
	if got := digest.FromBytes(raw); got != cfg.RootFS.DiffIDs[0] {
		t.Errorf("layer diff id %s, config says %s", got, cfg.RootFS.DiffIDs[0])
	}
	// Every blob in the tarball is referenced: nothing stray.
	if n := len(l.files); n != 5 {
		t.Errorf("tarball has %d files (%v), want oci-layout, index.json and 3 blobs", n, l.order)
	}
	entries := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("layer tar: %v", err)
		}
		entries[hdr.Name] = hdr
	}
	return md, cfg, entries
}

func TestBusybox(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testenv.Skip(t, "needs Debian's busybox-static (/bin/busybox): run hack/install-deps.sh")
	}
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := img.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("WriteTo returned %d, wrote %d", n, buf.Len())
	}
	md, cfg, entries := check(t, buf.Bytes(), BusyboxRef)
	want, err := img.ManifestDescriptor()
	if err != nil {
		t.Fatal(err)
	}
	if md.Digest != want.Digest || md.Size != want.Size {
		t.Errorf("index lists %s/%d, ManifestDescriptor says %s/%d", md.Digest, md.Size, want.Digest, want.Size)
	}
	if got := cfg.Config.Cmd; len(got) != 1 || got[0] != "sh" {
		t.Errorf("cmd %q", got)
	}
	if len(cfg.Config.Env) == 0 || cfg.Config.Env[0] != DefaultPath {
		t.Errorf("env %q", cfg.Config.Env)
	}
	bb := entries["bin/busybox"]
	if bb == nil || bb.Typeflag != tar.TypeReg || bb.Mode&0o111 == 0 {
		t.Fatalf("bin/busybox: %+v", bb)
	}
	fi, err := os.Stat("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if bb.Size != fi.Size() {
		t.Errorf("bin/busybox is %d bytes, /bin/busybox %d", bb.Size, fi.Size())
	}
	for _, a := range []string{"bin/sh", "bin/sleep", "bin/uname", "bin/true"} {
		if h := entries[a]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
			t.Errorf("%s: %+v, want a symlink to busybox", a, h)
		}
	}
	for _, f := range []string{"etc/passwd", "etc/group"} {
		if h := entries[f]; h == nil || h.Typeflag != tar.TypeReg || h.Size == 0 {
			t.Errorf("%s: %+v", f, h)
		}
	}
	if h := entries["tmp/"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp/: %+v, want mode 1777", h)
	}

	// Deterministic: built again, the same digests.
	again, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := again.ManifestDescriptor()
	if err != nil {
		t.Fatal(err)
	}
	if d2.Digest != want.Digest || again.LayerDigest() != img.LayerDigest() {
		t.Errorf("rebuilt busybox image differs: manifest %s vs %s, layer %s vs %s",
			d2.Digest, want.Digest, again.LayerDigest(), img.LayerDigest())
	}
}

func TestPause(t *testing.T) {
	bin, err := BuildPause()
	if err != nil {
		t.Fatal(err)
	}
	// Static: a pod sandbox has nothing but this file.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static", bin)
		}
	}
	f.Close()

	img, err := Pause(bin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := img.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	_, cfg, entries := check(t, buf.Bytes(), PauseRef)
	if got := cfg.Config.Entrypoint; len(got) != 1 || got[0] != "/pause" {
		t.Errorf("entrypoint %q", got)
	}
	h := entries["pause"]
	if h == nil || h.Mode&0o111 == 0 {
		t.Fatalf("pause entry: %+v", h)
	}
	if len(entries) != 1 {
		t.Errorf("pause layer has %d entries, want 1", len(entries))
	}
}

// TestPauseSignals runs the pause program: it keeps running, and exits 0
// on SIGTERM.
func TestPauseSignals(t *testing.T) {
	bin, err := BuildPause()
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				t.Fatalf("pause exited on its own: %v (%s)", err, stderr.String())
			case <-time.After(300 * time.Millisecond):
			}
			// A SIGCHLD (from nothing) must not stop it either.
			if err := cmd.Process.Signal(syscall.SIGCHLD); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				t.Fatalf("pause exited on SIGCHLD: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("pause on %v: %v (%s)", sig, err, stderr.String())
				}
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("pause ignored %v", sig)
			}
		})
	}
}

func TestRefName(t *testing.T) {
	for in, want := range map[string]string{
		"docker.io/library/busybox:vc-test": "vc-test",
		"localhost:5000/x":                  "latest",
		"localhost:5000/x:y":                "y",
		"x@sha256:abc":                      "sha256:abc",
	} {
		if got := refName(in); got != want {
			t.Errorf("refName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteAll(t *testing.T) {
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testenv.Skip(t, "needs Debian's busybox-static (/bin/busybox): run hack/install-deps.sh")
	}
	dir := t.TempDir()
	paths, err := WriteAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{BusyboxRef, PauseRef} {
		p, ok := paths[name]
		if !ok {
			t.Fatalf("no tarball for %s: %v", name, paths)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		check(t, b, name)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want just the two tarballs (no temp files left)", names)
	}
}

// TestDockerFile: the docker tarball is the OCI layout plus a
// docker-archive manifest.json naming the image, its config and layer
// blobs; the plain tarball has no manifest.json.
func TestDockerFile(t *testing.T) {
	img, err := FromFiles("example.com/x:1", []File{{Path: "f", Mode: 0o644, Data: []byte("x")}}, ocispec.ImageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := img.WriteDockerFile(filepath.Join(dir, "d.tar")); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteFile(filepath.Join(dir, "o.tar")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "d.tar"))
	l := readLayout(t, b)
	var m []dockerManifest
	if err := json.Unmarshal(l.files["manifest.json"], &m); err != nil || len(m) != 1 {
		t.Fatalf("manifest.json %s: %v", l.files["manifest.json"], err)
	}
	blobs, err := img.Blobs()
	if err != nil {
		t.Fatal(err)
	}
	want := dockerManifest{Config: "blobs/sha256/" + blobs[1].Descriptor.Digest.Encoded(), RepoTags: []string{"example.com/x:1"},
		Layers: []string{"blobs/sha256/" + blobs[0].Descriptor.Digest.Encoded()}}
	if m[0].Config != want.Config || len(m[0].Layers) != 1 || m[0].Layers[0] != want.Layers[0] || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != want.RepoTags[0] {
		t.Errorf("manifest.json %+v, want %+v", m[0], want)
	}
	for _, p := range append([]string{m[0].Config}, m[0].Layers...) {
		if _, ok := l.files[p]; !ok {
			t.Errorf("manifest.json names %s, not in the tarball", p)
		}
	}
	if _, ok := l.files["index.json"]; !ok {
		t.Error("no index.json: not an OCI layout too")
	}
	o, _ := os.ReadFile(filepath.Join(dir, "o.tar"))
	if _, ok := readLayout(t, o).files["manifest.json"]; ok {
		t.Error("WriteFile wrote a manifest.json")
	}
}
