package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarOf is a tar of entries, each followed by its body (regular files);
// those tar cannot encode (a file name ending in /) are left out.
func tarOf(t testing.TB, entries ...fuzzEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(15e8, 0)
		}
		if err := tw.WriteHeader(&h); err != nil {
			continue // a header tar cannot encode: left out
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type fuzzEntry struct {
	hdr  tar.Header
	body string
}

func reg(name, body string) fuzzEntry {
	return fuzzEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, body: body}
}

// fileState is what the fuzz targets compare of a file outside the
// directory a layer unpacks into: anything a write, a link, a chmod, a
// chown or a change of modification time would show.
type fileState struct {
	mode          os.FileMode
	uid, gid      uint32
	nlink         uint64
	size          int64
	mtime         syscall.Timespec
	content, link string
}

// treeState records every file under base but those under skip.
func treeState(t testing.TB, base, skip string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fileState{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, nlink: uint64(st.Nlink), size: fi.Size(), mtime: st.Mtim}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s.content = string(b)
		case fi.Mode()&os.ModeSymlink != 0:
			s.link, _ = os.Readlink(p)
		}
		out[p] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// layerScript is a layer's tar from a script of one entry a line: "f
// NAME" (a file), "d NAME", "l NAME TARGET" (a symbolic link), "h NAME
// TARGET" (a hard link), "c NAME", "b NAME" (devices 1:3) or "p NAME" (a
// fifo); other lines are skipped. The fuzz targets mutate scripts, a few
// bytes, rather than tars, kilobytes of padding and checksums.
func layerScript(t testing.TB, script string) []byte {
	var entries []fuzzEntry
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || len(f[0]) != 1 {
			continue
		}
		h := tar.Header{Name: f[1], Mode: 0o755}
		if len(f) > 2 {
			h.Linkname = f[2]
		}
		body := ""
		switch f[0] {
		case "f":
			h.Typeflag, body = tar.TypeReg, "x"
		case "d":
			h.Typeflag = tar.TypeDir
		case "l":
			h.Typeflag = tar.TypeSymlink
		case "h":
			h.Typeflag = tar.TypeLink
		case "c", "b":
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
			if f[0] == "b" {
				h.Typeflag = tar.TypeBlock
			}
		case "p":
			h.Typeflag = tar.TypeFifo
		default:
			continue
		}
		entries = append(entries, fuzzEntry{hdr: h, body: body})
	}
	return tarOf(t, entries...)
}

// untarSeeds are layers that try to leave their directory: by .., by
// absolute names, through symbolic links (absolute, relative, chained,
// replaced after a directory was made below them), by hard links, by
// whiteouts and by the root's own entry.
var untarSeeds = []string{
	"d etc/\nf etc/os-release\nf bin/sh\nl bin/ash sh\nh bin/sh2 bin/sh\np run/fifo\nc dev/null",
	"f ../../outside/dotdot\nf /abs\nf a/../../../up",
	"l escape /\nf escape/outside/through-abs-link",
	"l escape ../../outside\nf escape/through-rel-link\nd escape/sub/\nf escape/file",
	"l l1 l2\nl l2 ../../..\nf l1/outside/chained",
	"l out ../../outside\nh hard out/file\nh hard2 ../../outside/file",
	"f .wh.x\nf d/.wh..wh..opq\nf d/.wh.y",
	"d ./\nd a/\nd a/sub/\nl a ../../outside\nf c",
	"d sub/\nl sub ../../outside/sub",
}

// FuzzUntar unpacks a layer (layerScript) into a directory and checks that
// nothing outside it changed (a sibling directory with a file, a
// subdirectory and a symbolic link, and the directories around it) and
// that the directory is still a directory, whatever the entries' names,
// links and types.
func FuzzUntar(f *testing.F) {
	for _, s := range untarSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		base := t.TempDir()
		outside := filepath.Join(base, "outside")
		root := filepath.Join(base, "p", "root")
		for _, d := range []string{filepath.Join(outside, "sub"), filepath.Join(outside, "b"), root} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []string{filepath.Join(outside, "file"), filepath.Join(base, "p", "sibling")} {
			if err := os.WriteFile(p, []byte("outside"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("file", filepath.Join(outside, "link")); err != nil {
			t.Fatal(err)
		}
		// Times in the past, so that a change shows whatever the clock.
		past := time.Unix(1e9, 0)
		for _, p := range []string{outside, filepath.Join(outside, "sub"), filepath.Join(outside, "b"), filepath.Join(outside, "file"), filepath.Join(base, "p")} {
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
		}
		before := treeState(t, base, root)
		err := untar(bytes.NewReader(layerScript(t, script)), root)
		if fi, lerr := os.Lstat(root); lerr != nil || !fi.IsDir() {
			t.Fatalf("the layer's directory is gone or replaced (%v, %v); untar: %v", fi, lerr, err)
		}
		after := treeState(t, base, root)
		for p, b := range before {
			if a, ok := after[p]; !ok {
				t.Errorf("untar (error %v) removed %s, outside its directory", err, p)
			} else if a != b {
				t.Errorf("untar (error %v) changed %s, outside its directory: %+v, was %+v", err, p, a, b)
			}
		}
		for p := range after {
			if _, ok := before[p]; !ok {
				t.Errorf("untar (error %v) made %s, outside its directory", err, p)
			}
		}
	})
}

// digestOf is the sha256 digest of b.
func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// fill replaces, in a fuzzed document, the placeholders @NAME@ with
// their values: the digests a fuzzer cannot compute.
func fill(b []byte, vals map[string]string) []byte {
	for k, v := range vals {
		b = bytes.ReplaceAll(b, []byte("@"+k+"@"), []byte(v))
	}
	return b
}

// loadChecks loads archive into a fresh store and checks the outcome: a
// refused load leaves the store as it was (nothing staged, named, kept);
// a load that succeeds names images whose layer directories are there.
func loadChecks(t *testing.T, archive []byte) {
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(p, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	imgs, err := s.Load(ctx, p, nil)
	if n := names(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("load (error %v) left staging: %v", err, n)
	}
	if err != nil {
		if len(imgs) == 0 {
			if after := snapshot(t, s); !maps.Equal(before, after) {
				t.Errorf("a refused load (%v) changed the store", err)
			}
		}
		return
	}
	if len(imgs) == 0 {
		t.Fatal("load stored no image and said nothing")
	}
	for _, img := range imgs {
		got, err := s.Get(img.Name)
		if err != nil {
			t.Fatalf("image %s loaded but not found: %v", img.Name, err)
		}
		for _, l := range got.Layers {
			if _, err := os.Stat(s.LayerDir(l.DiffID)); err != nil {
				t.Errorf("image %s: layer %s: %v", img.Name, l.DiffID, err)
			}
		}
	}
}

// fuzzLayerScript is a small layer (layerScript).
const fuzzLayerScript = "d etc/\nf etc/hostname"

const fuzzConfig = `{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/app"],"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":["@DIFFID@"]}}`

// FuzzLoadDockerArchive loads a docker archive made of a fuzzed
// manifest.json, image config and layer (layerScript); the config's @DIFFID@ is
// the layer's digest, so that the fuzzer reaches past the check.
func FuzzLoadDockerArchive(f *testing.F) {
	manifest := `[{"Config":"config.json","RepoTags":["example.com/fuzz:v1"],"Layers":["layer.tar"]}]`
	f.Add([]byte(manifest), []byte(fuzzConfig), fuzzLayerScript)
	f.Add([]byte(`[{"Config":"config.json","RepoTags":["example.com/fuzz:v1","example.com/fuzz:v2"],"Layers":["layer.tar","layer.tar"]}]`),
		[]byte(strings.Replace(fuzzConfig, `"@DIFFID@"`, `"@DIFFID@","@DIFFID@"`, 1)), fuzzLayerScript)
	f.Add([]byte(`[{"Config":"../config.json","RepoTags":["v1"],"Layers":["/layer.tar"]}]`), []byte(fuzzConfig), fuzzLayerScript)
	for _, s := range untarSeeds {
		f.Add([]byte(manifest), []byte(fuzzConfig), s)
	}
	f.Fuzz(func(t *testing.T, manifest, config []byte, script string) {
		layer := layerScript(t, script)
		config = fill(config, map[string]string{"DIFFID": digestOf(layer)})
		loadChecks(t, tarOf(t, reg("manifest.json", string(manifest)), reg("config.json", string(config)), reg("layer.tar", string(layer))))
	})
}

// FuzzLoadOCIArchive loads an OCI layout archive made of a fuzzed
// index.json, image manifest, config and layer (layerScript), each stored under
// its digest; @MANIFEST@, @CONFIG@, @LAYER@ (digests) and @MANIFEST_SIZE@,
// @CONFIG_SIZE@, @LAYER_SIZE@ are filled in, as is the config's
// @DIFFID@ (the layer is stored uncompressed: its digest is its diff_id).
func FuzzLoadOCIArchive(f *testing.F) {
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"@MANIFEST@","size":@MANIFEST_SIZE@,"annotations":{"org.opencontainers.image.ref.name":"example.com/fuzz:v1"}}]}`
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"@CONFIG@","size":@CONFIG_SIZE@},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"@LAYER@","size":@LAYER_SIZE@}]}`
	f.Add([]byte(index), []byte(manifest), []byte(fuzzConfig), fuzzLayerScript)
	f.Add([]byte(strings.Replace(index, "org.opencontainers.image.ref.name", "io.containerd.image.name", 1)), []byte(manifest), []byte(fuzzConfig), fuzzLayerScript)
	f.Add([]byte(index), []byte(strings.Replace(manifest, `"digest":"@LAYER@",`, "", 1)), []byte(fuzzConfig), fuzzLayerScript)
	for _, s := range untarSeeds {
		f.Add([]byte(index), []byte(manifest), []byte(fuzzConfig), s)
	}
	f.Fuzz(func(t *testing.T, index, manifest, config []byte, script string) {
		layer := layerScript(t, script)
		ld := digestOf(layer)
		config = fill(config, map[string]string{"DIFFID": ld})
		manifest = fill(manifest, map[string]string{
			"CONFIG": digestOf(config), "CONFIG_SIZE": fmt.Sprint(len(config)),
			"LAYER": ld, "LAYER_SIZE": fmt.Sprint(len(layer)),
		})
		index = fill(index, map[string]string{"MANIFEST": digestOf(manifest), "MANIFEST_SIZE": fmt.Sprint(len(manifest))})
		blob := func(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(digestOf(b), "sha256:") }
		loadChecks(t, tarOf(t,
			reg("oci-layout", `{"imageLayoutVersion":"1.0.0"}`), reg("index.json", string(index)),
			reg(blob(manifest), string(manifest)), reg(blob(config), string(config)), reg(blob(layer), string(layer))))
	})
}

// The docker archive seed is what tarball.Write makes of it: the fuzz
// target's archive is a real one.
func TestFuzzSeedsLoad(t *testing.T) {
	needRoot(t)
	layer := layerScript(t, fuzzLayerScript)
	config := fill([]byte(fuzzConfig), map[string]string{"DIFFID": digestOf(layer)})
	m, _ := json.Marshal([]tarball.Descriptor{{Config: "config.json", RepoTags: []string{"example.com/fuzz:v1"}, Layers: []string{"layer.tar"}}})
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.tar")
	os.WriteFile(p, tarOf(t, reg("manifest.json", string(m)), reg("config.json", string(config)), reg("layer.tar", string(layer))), 0o600)
	imgs, err := s.Load(context.Background(), p, nil)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("load of the fuzz seed: %v %v", imgs, err)
	}
	b, err := os.ReadFile(filepath.Join(s.LayerDir(imgs[0].Layers[0].DiffID), "etc", "hostname"))
	if err != nil || string(b) != "x" {
		t.Errorf("etc/hostname: %q %v", b, err)
	}
}
