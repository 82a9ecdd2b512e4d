package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
)

// entry is a file of a test layer: a directory if name ends in /, a
// symbolic link if link is set, else a regular file of body.
type entry struct{ name, body, link string }

func layerOf(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/bin/app"}, Env: []string{"A=1"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: layers keep their owners, whiteouts are device nodes, opaque directories trusted.* xattrs")
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Two images with a base layer in common unpack it once: the second put
// finds it ("exists") and leaves its directory as it was.
func TestLayerSharing(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t)
	base := layerOf(t, entry{name: "etc/"}, entry{name: "etc/os-release", body: "base\n"})
	a := imageOf(t, base, layerOf(t, entry{name: "a", body: "a\n"}))
	b := imageOf(t, base, layerOf(t, entry{name: "b", body: "b\n"}))
	ia, err := s.Put(ctx, "example.com/a:1", a, nil)
	if err != nil {
		t.Fatal(err)
	}
	baseDir := s.LayerDir(ia.Layers[0].DiffID)
	before, err := os.Stat(filepath.Join(baseDir, "etc", "os-release"))
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	ib, err := s.Put(ctx, "example.com/b:1", b, func(p Progress) {
		if p.Index == 0 {
			statuses = append(statuses, p.Status)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if ib.Layers[0].DiffID != ia.Layers[0].DiffID {
		t.Fatalf("base diff_ids differ: %s, %s", ia.Layers[0].DiffID, ib.Layers[0].DiffID)
	}
	if !slices.Equal(statuses, []string{"exists"}) {
		t.Errorf("base layer of the second image: progress %v, want only exists", statuses)
	}
	after, err := os.Stat(filepath.Join(baseDir, "etc", "os-release"))
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("base layer unpacked again (%v)", err)
	}
	if n := len(names(t, filepath.Join(s.Root(), "layers"))); n != 3 {
		t.Errorf("%d layer directories, want 3 (base, a, b)", n)
	}
	dirs, release, err := s.Acquire(ib)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if len(dirs) != 2 || dirs[1] != baseDir {
		t.Errorf("lower dirs %v, want top first and the base %s last", dirs, baseDir)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || list[0].Config.Config.Entrypoint[0] != "/bin/app" {
		t.Fatalf("list: %v %v", list, err)
	}
}

// A layer's whiteouts become overlayfs's: a 0/0 character device for
// .wh.NAME, the opaque xattr for .wh..wh..opq; mounted, the deleted file
// and the opaque directory's old contents are gone.
func TestWhiteouts(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	img := imageOf(t,
		layerOf(t, entry{name: "etc/"}, entry{name: "etc/gone", body: "x"}, entry{name: "etc/kept", body: "k"},
			entry{name: "d/"}, entry{name: "d/old", body: "o"}),
		layerOf(t, entry{name: "etc/"}, entry{name: "etc/.wh.gone"}, entry{name: "d/"}, entry{name: "d/.wh..wh..opq"},
			entry{name: "d/new", body: "n"}))
	stored, err := s.Put(context.Background(), "example.com/wh:1", img, nil)
	if err != nil {
		t.Fatal(err)
	}
	top := s.LayerDir(stored.Layers[1].DiffID)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "etc", "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/gone in the top layer: %v mode %o rdev %d, want a 0/0 character device", err, st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(top, "etc", ".wh.gone")); err == nil {
		t.Error("the .wh. file itself was unpacked")
	}
	buf := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(top, "d"), opaqueXattr, buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("d's opaque xattr: %q %v", buf[:n], err)
	}
	dirs, release, err := s.Acquire(stored)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// Lookup sees the stack as the overlay will.
	for p, want := range map[string]string{"etc/gone": "", "etc/kept": dirs[1], "d/old": "", "d/new": dirs[0]} {
		got, ok := Lookup(dirs, p)
		if ok != (want != "") || (ok && got != filepath.Join(want, p)) {
			t.Errorf("Lookup(%s) = %q %v, want it in %q", p, got, ok, want)
		}
	}
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(dirs, ":")); err != nil {
		t.Fatalf("mount: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	for p, want := range map[string]bool{"etc/gone": false, "etc/kept": true, "d/old": false, "d/new": true} {
		if _, err := os.Stat(filepath.Join(mnt, p)); (err == nil) != want {
			t.Errorf("%s in the mounted image: present %v, want %v", p, err == nil, want)
		}
	}
}

// No entry of a layer lands outside its directory: not by .., not
// through a symbolic link to /.
func TestUnpackStaysInside(t *testing.T) {
	needRoot(t)
	outside := t.TempDir()
	img := imageOf(t, layerOf(t,
		entry{name: "../../../../../../" + outside + "/dotdot", body: "x"},
		entry{name: "escape", link: outside},
		entry{name: "escape/through-link", body: "x"}))
	s := openStore(t)
	stored, err := s.Put(context.Background(), "example.com/evil:1", img, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := names(t, outside); len(n) != 0 {
		t.Fatalf("the layer wrote outside its directory: %v", n)
	}
	dir := s.LayerDir(stored.Layers[0].DiffID)
	if _, err := os.Stat(filepath.Join(dir, outside, "dotdot")); err != nil {
		t.Errorf("the .. entry was not confined: %v", err)
	}
}

// badLayerImage serves one layer whose bytes are not what its digest
// says.
type badLayerImage struct {
	v1.Image
	bad v1.Hash
}

func (b badLayerImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := b.Image.LayerByDigest(h)
	if err != nil || h != b.bad {
		return l, err
	}
	return badLayer{l}, nil
}

type badLayer struct{ v1.Layer }

func (badLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("not the layer")), nil
}

// A blob that does not match its digest (or a layer its diff_id) is
// refused, naming it, and leaves nothing: no blob, no layer, no name, no
// staging files, though the layer before it was good.
func TestBadDigestLeavesNothing(t *testing.T) {
	needRoot(t)
	good := layerOf(t, entry{name: "good", body: "g"})
	second := layerOf(t, entry{name: "second", body: "s"})
	img := imageOf(t, good, second)
	d, _ := second.Digest()
	wrongDiffID, _ := mutate.Config(imageOf(t, good), v1.Config{})
	cf, _ := wrongDiffID.ConfigFile()
	cf.RootFS.DiffIDs[0] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	wrongDiffID, _ = mutate.ConfigFile(wrongDiffID, cf)
	for what, c := range map[string]struct {
		img  v1.Image
		want string
	}{
		"blob":    {badLayerImage{img, d}, d.String()},
		"diff_id": {wrongDiffID, "diff_id"},
	} {
		t.Run(what, func(t *testing.T) {
			s := openStore(t)
			_, err := s.Put(context.Background(), "example.com/bad:1", c.img, nil)
			if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("put: %v, want a digest mismatch naming %s", err, c.want)
			}
			for _, d := range []string{"blobs/sha256", "layers", "tmp"} {
				if n := names(t, filepath.Join(s.Root(), d)); len(n) != 0 {
					t.Errorf("%s left: %v", d, n)
				}
			}
			if _, err := s.Get("example.com/bad:1"); !errdefs.IsNotFound(err) {
				t.Errorf("get after a failed put: %v, want not found", err)
			}
		})
	}
}

// rmi of an image a container uses is refused, naming the container; -f
// removes it; layers go once no image has them, but not while an
// overlay has them mounted.
func TestRemoveInUse(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t)
	base := layerOf(t, entry{name: "base", body: "b"})
	a, err := s.Put(ctx, "example.com/a:1", imageOf(t, base, layerOf(t, entry{name: "a", body: "a"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Put(ctx, "example.com/b:1", imageOf(t, base), nil)
	if err != nil {
		t.Fatal(err)
	}
	users := func(img *Image) []string {
		if img.Digest == a.Digest {
			return []string{"ctr-1"}
		}
		return nil
	}
	if _, err := s.Remove("example.com/a:1", false, users); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "ctr-1") {
		t.Fatalf("rmi of an image in use: %v, want refused naming ctr-1", err)
	}
	if _, err := s.Get("example.com/a:1"); err != nil {
		t.Fatalf("refused rmi removed the image: %v", err)
	}
	// a's own layer mounted, as a container's overlay would have it.
	mnt := t.TempDir()
	aTop := s.LayerDir(a.Layers[1].DiffID)
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+aTop+":"+s.LayerDir(a.Layers[0].DiffID)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove("example.com/a:1", true, users); err != nil {
		t.Fatalf("rmi -f: %v", err)
	}
	if _, err := s.Get("example.com/a:1"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "example.com/a:1") {
		t.Errorf("get after rmi: %v, want not found naming it", err)
	}
	if _, err := os.Stat(aTop); err != nil {
		t.Errorf("a mounted layer was removed: %v", err)
	}
	if _, err := os.Stat(s.LayerDir(b.Layers[0].DiffID)); err != nil {
		t.Errorf("the base layer b still uses was removed: %v", err)
	}
	unix.Unmount(mnt, unix.MNT_DETACH)
	if _, err := s.Remove("example.com/b:1", false, users); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"blobs/sha256", "layers"} {
		if n := names(t, filepath.Join(s.Root(), d)); len(n) != 0 {
			t.Errorf("%s left after the last rmi: %v", d, n)
		}
	}
	if _, err := s.Remove("example.com/nope:1", false, nil); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "example.com/nope:1") {
		t.Errorf("rmi of an unknown image: %v", err)
	}
}

// save writes a docker archive that load reads back: same image id and
// layers, same config.
func TestSaveLoad(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t)
	orig, err := s.Put(ctx, "example.com/app:v1", imageOf(t, layerOf(t, entry{name: "f", body: "f"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "app.tar")
	if err := s.Save(ctx, out, []string{"example.com/app:v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) }); err != nil {
		t.Fatalf("not a docker archive: %v", err)
	}
	if _, err := s.Remove("example.com/app:v1", false, nil); err != nil {
		t.Fatal(err)
	}
	loaded, err := s.Load(ctx, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].Name != "example.com/app:v1" || loaded[0].ID != orig.ID || loaded[0].Layers[0] != orig.Layers[0] {
		t.Fatalf("loaded %+v, want %+v", loaded, orig)
	}
	if err := s.Save(ctx, filepath.Join(t.TempDir(), "x.tar"), []string{"example.com/nope:1"}); !errdefs.IsNotFound(err) {
		t.Errorf("save of an unknown image: %v", err)
	}
	if _, err := s.Load(ctx, "/etc/hostname", nil); err == nil {
		t.Error("load of a non-tar succeeded")
	}
}

// A pull from a registry on 127.0.0.1 speaks plain HTTP; a private
// address other than loopback does not get it.
func TestPullLoopback(t *testing.T) {
	needRoot(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/test/app:v1"
	r, _ := name.ParseReference(ref)
	img := imageOf(t, layerOf(t, entry{name: "hello", body: "world"}))
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	var done bool
	got, err := s.Pull(context.Background(), ref, PullOptions{Progress: func(p Progress) { done = done || p.Status == "done" }})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got.Digest != want.String() || !done {
		t.Errorf("pulled %s (progress done %v), want %s", got.Digest, done, want)
	}
	if _, err := s.Pull(context.Background(), u.Host+"/test/nope:v1", PullOptions{}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "test/nope:v1") {
		t.Errorf("pull of an unknown image: %v", err)
	}
	req, _ := http.NewRequest("GET", "http://10.1.2.3:5000/v2/", nil)
	if _, err := (loopbackOnlyHTTP{http.DefaultTransport}).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("plain http to 10.1.2.3: %v, want refused", err)
	}
}

// tarDir writes the files under dir to a tar at path.
func tarDir(t *testing.T, dir, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// An OCI layout tarball (podman save --format oci-archive) loads under
// the name its index annotates; one with only a tag for a name is
// refused, naming the annotation, and stores nothing.
func TestLoadOCILayout(t *testing.T) {
	needRoot(t)
	img := imageOf(t, layerOf(t, entry{name: "f", body: "oci"}))
	for _, c := range []struct{ ref, err string }{{"example.com/oci:v1", ""}, {"v1", "ref.name"}} {
		dir := t.TempDir()
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": c.ref})); err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(t.TempDir(), "oci.tar")
		tarDir(t, dir, archive)
		s := openStore(t)
		got, err := s.Load(context.Background(), archive, nil)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("load of a layout named %q: %v, want an error naming %s", c.ref, err, c.err)
			}
			if n := names(t, filepath.Join(s.Root(), "layers")); len(n) != 0 {
				t.Errorf("a refused load left layers %v", n)
			}
			continue
		}
		d, _ := img.Digest()
		if err != nil || len(got) != 1 || got[0].Name != "example.com/oci:v1" || got[0].Digest != d.String() {
			t.Fatalf("load: %+v %v", got, err)
		}
		if n := names(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
			t.Errorf("staging left: %v", n)
		}
	}
}

// dockerArchive writes img to path as docker save does (uncompressed
// layer.tar files, manifest.json naming them) under the name tag, after
// corrupt (if not nil) has had its way with each layer's tar.
func dockerArchive(t *testing.T, path, tag string, img v1.Image, corrupt func([]byte)) {
	t.Helper()
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{id.Hex + ".json": cfg}
	var names []string
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if corrupt != nil {
			corrupt(b)
		}
		d, _ := l.DiffID()
		names = append(names, d.Hex+"/layer.tar")
		files[d.Hex+"/layer.tar"] = b
	}
	m, _ := json.Marshal([]tarball.Descriptor{{Config: id.Hex + ".json", RepoTags: []string{tag}, Layers: names}})
	files["manifest.json"] = m
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[n])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// snapshot is every file of the store but its lock and staging area,
// with its contents (a directory's as "dir").
func snapshot(t *testing.T, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(s.Root(), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.Root(), p)
		switch {
		case rel == "lock" || rel == "tmp":
			return nil
		case strings.HasPrefix(rel, "tmp/"):
			return filepath.SkipDir
		case d.IsDir():
			out[rel] = "dir"
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		default:
			out[rel] = d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A docker archive whose layer has one byte flipped, loaded over the good
// one (whose layer directory is there already), is refused naming the
// layer's diff_id, and the store stays exactly as it was: the good blob,
// the good name, and a save that exports the good bytes.
func TestLoadCorruptLayerOverGood(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	img := imageOf(t, layerOf(t, entry{name: "etc/"}, entry{name: "etc/data", body: "the good bytes\n"}))
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.tar"), filepath.Join(dir, "bad.tar")
	dockerArchive(t, good, "example.com/app:v1", img, nil)
	dockerArchive(t, bad, "example.com/app:v1", img, func(b []byte) {
		i := bytes.Index(b, []byte("good bytes"))
		b[i] ^= 0x01
	})
	s := openStore(t)
	loaded, err := s.Load(ctx, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	diffID := loaded[0].Layers[0].DiffID
	_, err = s.Load(ctx, bad, nil)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), diffID) || !strings.Contains(err.Error(), "layer sha256:") {
		t.Fatalf("load of the corrupt archive: %v, want a digest mismatch naming the layer and diff_id %s", err, diffID)
	}
	after := snapshot(t, s)
	if !maps.Equal(before, after) {
		for k := range maps.Keys(after) {
			if before[k] != after[k] {
				t.Errorf("%s changed by the refused load", k)
			}
		}
		for k := range maps.Keys(before) {
			if _, ok := after[k]; !ok {
				t.Errorf("%s removed by the refused load", k)
			}
		}
	}
	if n := names(t, filepath.Join(s.Root(), "tmp")); len(n) != 0 {
		t.Errorf("staging left: %v", n)
	}
	// What save exports loads into an empty store: the good layer.
	out := filepath.Join(dir, "saved.tar")
	if err := s.Save(ctx, out, []string{"example.com/app:v1"}); err != nil {
		t.Fatal(err)
	}
	fresh := openStore(t)
	again, err := fresh.Load(ctx, out, nil)
	if err != nil {
		t.Fatalf("load of what save exported: %v", err)
	}
	if again[0].ID != loaded[0].ID || again[0].Layers[0] != loaded[0].Layers[0] {
		t.Errorf("round trip: %+v, want %+v", again[0], loaded[0])
	}
	b, err := os.ReadFile(filepath.Join(fresh.LayerDir(diffID), "etc", "data"))
	if err != nil || string(b) != "the good bytes\n" {
		t.Errorf("etc/data after the round trip: %q %v", b, err)
	}
}

// A layer blob new to the store whose layer directory another image
// unpacked already is checked all the same: an image that names another
// blob for the same diff_id (as a second compression of it would be) is
// refused if that blob is not the layer.
func TestPutChecksBlobOfUnpackedLayer(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t)
	l := layerOf(t, entry{name: "f", body: "layer"})
	if _, err := s.Put(ctx, "example.com/a:1", imageOf(t, l), nil); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	other := layerOf(t, entry{name: "f", body: "other"})
	// An image of other's blob with l's diff_id in its config.
	img := imageOf(t, other)
	cf, _ := img.ConfigFile()
	cf.RootFS.DiffIDs[0], _ = l.DiffID()
	img, _ = mutate.ConfigFile(img, cf)
	_, err := s.Put(ctx, "example.com/b:1", img, nil)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("put of a blob that is not its diff_id's layer: %v, want a digest mismatch", err)
	}
	if after := snapshot(t, s); !maps.Equal(before, after) {
		t.Errorf("the refused put changed the store")
	}
}

// rmi -f of an image a container uses removes its name only: its blobs
// and layers stay (not mounted: the container is stopped) and GetDigest
// still finds it, also after a put that collects; once no container uses
// it, Prune collects it.
func TestRemoveForceKeepsInUse(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t)
	a, err := s.Put(ctx, "example.com/a:1", imageOf(t, layerOf(t, entry{name: "a", body: "a"})), nil)
	if err != nil {
		t.Fatal(err)
	}
	inUse := []string{a.Digest}
	s.KeepInUse(func() ([]string, error) { return inUse, nil })
	users := func(*Image) []string { return []string{"ctr-1 (stopped)"} }
	if _, err := s.Remove("example.com/a:1", true, users); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("example.com/a:1"); !errdefs.IsNotFound(err) {
		t.Errorf("the name is still there after rmi -f: %v", err)
	}
	// Another image's put collects too.
	if _, err := s.Put(ctx, "example.com/b:1", imageOf(t, layerOf(t, entry{name: "b", body: "b"})), nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetDigest("example.com/a:1", a.Digest)
	if err != nil || got.ID != a.ID {
		t.Fatalf("GetDigest of the container's image after rmi -f: %+v %v", got, err)
	}
	dirs, release, err := s.Acquire(got)
	if err != nil {
		t.Fatalf("the container's layers after rmi -f: %v", err)
	}
	release()
	if _, err := os.Stat(filepath.Join(dirs[0], "a")); err != nil {
		t.Errorf("the layer's file: %v", err)
	}
	// The container removed: Prune collects a, not b.
	inUse = nil
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDigest("example.com/a:1", a.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("GetDigest after the container went and a prune: %v, want not found", err)
	}
	if _, err := os.Stat(dirs[0]); !os.IsNotExist(err) {
		t.Errorf("a's layer after the prune: %v, want removed", err)
	}
	if n := names(t, filepath.Join(s.Root(), "layers")); len(n) != 1 {
		t.Errorf("layers after the prune: %v, want b's only", n)
	}
	// An unknown in-use list keeps everything.
	s.KeepInUse(func() ([]string, error) { return nil, errors.New("state root unreadable") })
	if _, err := s.Remove("example.com/b:1", true, nil); err == nil || !strings.Contains(err.Error(), "state root unreadable") {
		t.Errorf("rmi with the users unknown: %v, want the collection skipped, saying why", err)
	}
	if n := names(t, filepath.Join(s.Root(), "layers")); len(n) != 1 {
		t.Errorf("layers after a collection that could not know the users: %v, want b's kept", n)
	}
}
