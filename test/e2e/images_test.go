package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testenv"
)

// The image tests keep their images in a data root of their own (the
// shared one's busybox must stay the built-in for every other test) and
// boot the shared guest image with --kernel and --initrd.

// imgEnv is a data root and the environment vc runs with.
type imgEnv struct {
	data string
	env  []string
}

func newImgEnv(t *testing.T) *imgEnv {
	t.Helper()
	return &imgEnv{data: t.TempDir()}
}

// vc runs the vc CLI on this data root; run's flags get the guest image.
func (e *imgEnv) vc(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if len(args) > 0 && args[0] == "run" {
		args = append([]string{"run", "--kernel", kernel, "--initrd", initrd, "--network", "none"}, args[1:]...)
	}
	cmd := exec.CommandContext(ctx, vcBin, append([]string{"--state-root", stateRoot, "--data-root", e.data}, args...)...)
	cmd.Env = append(os.Environ(), e.env...)
	var o, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &se
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("vc %v: %v", args, err)
	}
	return o.String(), se.String(), code
}

// must is vc that fails the test unless vc succeeds.
func (e *imgEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := e.vc(t, args...)
	if code != 0 {
		t.Fatalf("vc %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

// storeEntries lists what the image store holds: blobs, layers, staging.
func (e *imgEnv) storeEntries(t *testing.T, sub string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.data, "images", sub))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, en := range ents {
		out = append(out, en.Name())
	}
	return out
}

// startRegistry serves an in-memory registry on 127.0.0.1, its handler
// wrapped by wrap if not nil, and returns its host:port.
func startRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// busyboxLayer is the built-in busybox root filesystem as a layer.
var busyboxLayer = sync.OnceValues(func() (v1.Layer, error) {
	root, err := rootfs.Busybox(filepath.Join(dataRoot, "rootfs"))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(root, p)
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tw.Close()
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
})

// tarEntry is a file of a test layer: a directory if its name ends in /,
// a whiteout if it starts with .wh.; owned by uid:gid.
type tarEntry struct {
	name, body string
	mode       int64
	uid, gid   int
}

func layerOf(t *testing.T, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, Typeflag: tar.TypeReg, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Size = tar.TypeDir, 0
			if e.mode == 0 {
				h.Mode = 0o755
			}
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

// entryScript prints what the tests check: its arguments, user, working
// directory, an image variable, and whether the whiteout hid a file of
// busybox's layer.
const entryScript = `echo "args:$*"
echo "user:$(id -u):$(id -g)"
echo "cwd:$(pwd)"
echo "env:$GREETING"
test -e /bin/vi && echo "vi:present" || echo "vi:gone"
echo "owner:$(stat -c %u:%g /srv/app)"
`

// appImage is busybox plus a layer of its own (tag tells the variant
// apart: two images share the busybox layer): a user app (1000:1001),
// /entry.sh, /srv/app owned by app, busybox's /bin/vi whited out (not a
// file of /etc: vc binds /etc/hostname and /etc/hosts over the image's);
// its config sets Entrypoint, Cmd, Env, WorkingDir and User.
func appImage(t *testing.T, tag string) v1.Image {
	t.Helper()
	base, err := busyboxLayer()
	if err != nil {
		t.Fatal(err)
	}
	top := layerOf(t,
		tarEntry{name: "etc/"},
		tarEntry{name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/srv/app:/bin/sh\n"},
		tarEntry{name: "bin/"},
		tarEntry{name: "bin/.wh.vi"},
		tarEntry{name: "entry.sh", body: entryScript, mode: 0o755},
		tarEntry{name: "srv/"},
		tarEntry{name: "srv/app/", uid: 1000, gid: 1001},
		tarEntry{name: "srv/app/variant", body: tag + "\n"},
	)
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: []string{"/bin/sh", "/entry.sh"},
		Cmd:        []string{"default-arg"},
		Env:        []string{"PATH=/bin:/sbin", "GREETING=hello-from-image"},
		WorkingDir: "/srv/app",
		User:       "app",
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// wantLines fails unless out has every line of want.
func wantLines(t *testing.T, what, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.TrimSpace(l) == w {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no line %q in:\n%s", what, w, out)
		}
	}
}

// vc pull from a registry on 127.0.0.1, vc images, vc run of the image:
// the config's Entrypoint, Cmd, Env, WorkingDir and User in the VM, the
// whiteout applied, docker's overrides on top; vc rmi refuses the image
// while a container has it.
func TestImagesPullRun(t *testing.T) {
	e := newImgEnv(t)
	host := startRegistry(t, nil)
	ref := host + "/e2e/app:v1"
	push(t, ref, appImage(t, "one"))

	out := e.must(t, "pull", ref)
	if !regexp.MustCompile(`(?m)^[0-9a-f]{12}: done `).MatchString(out) || !strings.Contains(out, "Digest: sha256:") {
		t.Errorf("pull's output (not a terminal: a line a layer):\n%s", out)
	}
	out = e.must(t, "images")
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(host+"/e2e/app") + `\s+v1\s+[0-9a-f]{12}\s`).MatchString(out) {
		t.Errorf("images:\n%s", out)
	}
	var row struct{ Repository, Tag, ID, Digest string }
	if err := json.Unmarshal([]byte(e.must(t, "images", "--format", "json")), &row); err != nil || row.Tag != "v1" || !strings.HasPrefix(row.Digest, "sha256:") {
		t.Errorf("images --format json: %+v %v", row, err)
	}

	id := "e2e-img-run"
	out = e.must(t, "run", "--rm", "--name", id, ref)
	wantLines(t, "the image's config", out, "args:default-arg", "user:1000:1001", "cwd:/srv/app", "env:hello-from-image", "vi:gone", "owner:1000:1001")
	noLeftovers(t, id)

	out = e.must(t, "run", "--rm", "--name", id, "-e", "GREETING=from-flag", "-w", "/tmp", "-u", "0", ref, "--", "x", "y")
	wantLines(t, "overrides", out, "args:x y", "user:0:0", "cwd:/tmp", "env:from-flag")
	noLeftovers(t, id)
	out = e.must(t, "run", "--rm", "--name", id, "--entrypoint", "cat", ref, "--", "/srv/app/variant")
	if strings.TrimSpace(out) != "one" {
		t.Errorf("--entrypoint cat: %q", out)
	}
	noLeftovers(t, id)

	// In use: rmi refuses, naming the container; rmi -f removes the
	// name but not the layers the container's overlay has mounted, and
	// the container goes on reading them; the next pull finds them.
	did := "e2e-img-inuse"
	e.must(t, "run", "-d", "--name", did, "--entrypoint", "sleep", ref, "--", "1000")
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", did) })
	_, errOut, code := e.vc(t, "rmi", ref)
	if code == 0 || !strings.Contains(errOut, did) {
		t.Errorf("rmi of an image in use: exit %d stderr %q, want refused naming %s", code, errOut, did)
	}
	layers := e.storeEntries(t, "layers")
	kept, err := os.Stat(filepath.Join(e.data, "images", "layers", layers[0]))
	if err != nil {
		t.Fatal(err)
	}
	if out := e.must(t, "rmi", "-f", ref); !strings.Contains(out, "Untagged: "+ref) {
		t.Errorf("rmi -f: %q", out)
	}
	if l := e.storeEntries(t, "layers"); len(l) != len(layers) {
		t.Errorf("rmi -f removed layers a running container has mounted: %v, were %v", l, layers)
	}
	if out, errOut, code := e.vc(t, "exec", did, "cat", "/srv/app/variant"); code != 0 || strings.TrimSpace(out) != "one" {
		t.Errorf("exec after rmi -f: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if _, errOut, code := vcRun(t, nil, "rm", "-f", did); code != 0 {
		t.Fatalf("rm -f: %s", errOut)
	}
	noLeftovers(t, did)
	// The blobs went with the name and are fetched again; the layers
	// kept are taken as they are, not unpacked again.
	e.must(t, "pull", ref)
	if after, err := os.Stat(filepath.Join(e.data, "images", "layers", layers[0])); err != nil || !os.SameFile(kept, after) {
		t.Errorf("pull after rmi -f did not keep the layer it found (%v)", err)
	}
	e.must(t, "rmi", ref)
	if l := e.storeEntries(t, "layers"); len(l) != 0 {
		t.Errorf("layers left after the last rmi: %v", l)
	}
	_, errOut, code = e.vc(t, "run", "--rm", "--name", id, ref)
	if code == 0 || !strings.Contains(errOut, ref) || !strings.Contains(errOut, "unknown") {
		t.Errorf("run of a removed image: exit %d stderr %q, want unknown naming it", code, errOut)
	}
	noLeftovers(t, id)
	_, errOut, code = e.vc(t, "pull", host+"/e2e/nope:v1")
	if code == 0 || !strings.Contains(errOut, "e2e/nope:v1") {
		t.Errorf("pull of an unknown image: exit %d stderr %q", code, errOut)
	}
}

// A registry that wants basic auth: credentials from docker's
// config.json ($DOCKER_CONFIG) pull; none, or wrong ones, fail and store
// nothing.
func TestImagesRegistryAuth(t *testing.T) {
	const user, pass = "e2e", "s3cret"
	host := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	ref := host + "/e2e/private:v1"
	push(t, ref, appImage(t, "private"), remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	dockerConfig := func(u, p string) string {
		dir := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte(u + ":" + p))
		b, _ := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"auth": auth}}})
		if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	e := newImgEnv(t)
	for what, dir := range map[string]string{"no credentials": t.TempDir(), "a wrong password": dockerConfig(user, "wrong")} {
		e.env = []string{"DOCKER_CONFIG=" + dir}
		_, errOut, code := e.vc(t, "pull", ref)
		if code == 0 || !strings.Contains(errOut, "e2e/private:v1") || !strings.Contains(errOut, "UNAUTHORIZED") {
			t.Errorf("pull with %s: exit %d stderr %q, want unauthorized naming the image", what, code, errOut)
		}
		if out := e.must(t, "images", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("pull with %s stored %q", what, out)
		}
	}
	e.env = []string{"DOCKER_CONFIG=" + dockerConfig(user, pass)}
	e.must(t, "pull", ref)
	if out := e.must(t, "images"); !strings.Contains(out, host+"/e2e/private") {
		t.Errorf("images after an authenticated pull:\n%s", out)
	}

	// vc login checks the credentials and writes them where docker does;
	// vc logout removes them.
	e = newImgEnv(t)
	cfgDir := t.TempDir()
	e.env = []string{"DOCKER_CONFIG=" + cfgDir}
	if _, errOut, code := e.vc(t, "login", "-u", user, "-p", "wrong", host); code == 0 || !strings.Contains(errOut, host) {
		t.Errorf("login with a wrong password: exit %d stderr %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "config.json")); err == nil {
		t.Error("a failed login wrote config.json")
	}
	e.must(t, "login", "-u", user, "-p", pass, host)
	b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if !strings.Contains(string(b), `"`+host+`"`) {
		t.Errorf("config.json after login: %s", b)
	}
	e.must(t, "pull", ref)
	e.must(t, "rmi", ref)
	e.must(t, "logout", host)
	if _, errOut, code := e.vc(t, "pull", ref); code == 0 || !strings.Contains(errOut, "UNAUTHORIZED") {
		t.Errorf("pull after logout: exit %d stderr %q", code, errOut)
	}
}

// A registry serving a blob whose bytes are not its digest: the pull
// fails naming the layer, and leaves no blob, layer, staging file or
// image.
func TestImagesCorruptBlob(t *testing.T) {
	img := appImage(t, "corrupt")
	layers, _ := img.Layers()
	bad, _ := layers[1].Digest()
	host := startRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			body[len(body)/2] ^= 0xff // same length, other bytes
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	})
	ref := host + "/e2e/corrupt:v1"
	push(t, ref, img)
	e := newImgEnv(t)
	_, errOut, code := e.vc(t, "pull", ref)
	if code == 0 || !strings.Contains(errOut, bad.String()) || !strings.Contains(errOut, "e2e/corrupt:v1") {
		t.Fatalf("pull of a corrupted blob: exit %d stderr %q, want a failure naming the image and the layer", code, errOut)
	}
	t.Logf("error: %s", strings.TrimSpace(errOut))
	for _, sub := range []string{"blobs/sha256", "layers", "tmp"} {
		if l := e.storeEntries(t, sub); len(l) != 0 {
			t.Errorf("%s left after a failed pull: %v", sub, l)
		}
	}
	if out := e.must(t, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("a failed pull named an image: %q", out)
	}
}

// vc save writes a docker archive; after rmi, vc load of it brings the
// image back and it runs again. Where podman is installed, podman (in a
// storage of the test's own) loads vc's archive, and vc loads podman's
// docker and OCI archives.
func TestImagesSaveLoad(t *testing.T) {
	e := newImgEnv(t)
	host := startRegistry(t, nil)
	ref := host + "/e2e/saved:v1"
	push(t, ref, appImage(t, "saved"))
	e.must(t, "pull", ref)
	archive := filepath.Join(t.TempDir(), "saved.tar")
	e.must(t, "save", "-o", archive, ref)
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil || len(m) != 1 || len(m[0].RepoTags) != 1 || m[0].RepoTags[0] != ref || len(m[0].Layers) != 2 {
		t.Fatalf("save's manifest.json: %+v %v", m, err)
	}
	e.must(t, "rmi", ref)
	if out := e.must(t, "load", "-i", archive); !strings.Contains(out, "Loaded image: "+ref) {
		t.Errorf("load: %q", out)
	}
	id := "e2e-img-loaded"
	out := e.must(t, "run", "--rm", "--name", id, ref)
	wantLines(t, "the loaded image", out, "args:default-arg", "user:1000:1001", "cwd:/srv/app", "env:hello-from-image")
	noLeftovers(t, id)

	if _, err := exec.LookPath("podman"); err != nil {
		if testenv.Strict() {
			t.Fatalf("%s=1 (make test): podman not installed (hack/install-deps.sh): compatibility with podman load/save not checked", testenv.StrictEnv)
		}
		t.Log("podman not installed: compatibility with podman load/save not checked")
		return
	}
	pdir := t.TempDir()
	podman := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("podman", append([]string{"--root", filepath.Join(pdir, "root"), "--runroot", filepath.Join(pdir, "run"), "--storage-driver", "vfs"}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("podman %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	if out := podman("load", "-i", archive); !strings.Contains(out, ref) {
		t.Errorf("podman load of vc's archive: %s", out)
	}
	for _, format := range []string{"docker-archive", "oci-archive"} {
		p := filepath.Join(t.TempDir(), format+".tar")
		podman("save", "--format", format, "-o", p, ref)
		e.must(t, "rmi", ref)
		if out := e.must(t, "load", "-i", p); !strings.Contains(out, "Loaded image: "+ref) {
			t.Errorf("vc load of podman's %s: %q", format, out)
		}
		if out := e.must(t, "images"); !strings.Contains(out, host+"/e2e/saved") {
			t.Errorf("images after loading podman's %s:\n%s", format, out)
		}
	}
	out = e.must(t, "run", "--rm", "--name", id, ref)
	wantLines(t, "the image from podman", out, "args:default-arg", "user:1000:1001", "env:hello-from-image")
	noLeftovers(t, id)
}

// Two images on one base layer unpack it once: the second pull says it
// exists and the store has three layer directories, not four. Two
// concurrent pulls of one image both succeed and leave one copy.
func TestImagesSharedLayer(t *testing.T) {
	e := newImgEnv(t)
	host := startRegistry(t, nil)
	a, b := host+"/e2e/shared-a:v1", host+"/e2e/shared-b:v1"
	push(t, a, appImage(t, "a"))
	push(t, b, appImage(t, "b"))
	e.must(t, "pull", a)
	base, _ := busyboxLayer()
	bd, _ := base.Digest()
	dd, _ := base.DiffID()
	before, err := os.Stat(filepath.Join(e.data, "images", "layers", dd.Hex, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	out := e.must(t, "pull", b)
	if !strings.Contains(out, bd.Hex[:12]+": already exists") {
		t.Errorf("second pull did not find the base layer %s:\n%s", bd.Hex[:12], out)
	}
	if after, err := os.Stat(filepath.Join(e.data, "images", "layers", dd.Hex, "bin", "busybox")); err != nil || !os.SameFile(before, after) {
		t.Errorf("the base layer was unpacked again (%v)", err)
	}
	if l := e.storeEntries(t, "layers"); len(l) != 3 {
		t.Errorf("%d layer directories, want 3 (busybox, a's, b's): %v", len(l), l)
	}

	c := host + "/e2e/concurrent:v1"
	push(t, c, appImage(t, "c"))
	var wg sync.WaitGroup
	errs := make([]string, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, errOut, code := e.vc(t, "pull", c); code != 0 {
				errs[i] = out + errOut
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != "" {
			t.Errorf("concurrent pull %d failed: %s", i+1, err)
		}
	}
	if l := e.storeEntries(t, "layers"); len(l) != 4 {
		t.Errorf("%d layer directories after the concurrent pulls, want 4: %v", len(l), l)
	}
	if l := e.storeEntries(t, "tmp"); len(l) != 0 {
		t.Errorf("staging left: %v", l)
	}
	if out := e.must(t, "images", "-q"); len(strings.Fields(out)) != 3 {
		t.Errorf("images -q: %q, want 3 images", out)
	}
}

// On a terminal, vc pull rewrites a line a layer with its bytes so far.
func TestImagesPullProgressTTY(t *testing.T) {
	e := newImgEnv(t)
	host := startRegistry(t, nil)
	ref := host + "/e2e/tty:v1"
	push(t, ref, appImage(t, "tty"))
	cmd := exec.Command(vcBin, "--state-root", stateRoot, "--data-root", e.data, "pull", ref)
	f, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, _ := io.ReadAll(f) // ends with EIO once vc exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`\r\x1b\[K[0-9a-f]{12}: downloading [0-9.]+\S* / [0-9.]+\S*`).Match(out) || !strings.Contains(string(out), ": done ") {
		t.Errorf("pull on a terminal: no per-layer byte counts rewritten in place: %q", out)
	}
}

// dockerSave writes img to path as docker save does: uncompressed
// layer.tar files that manifest.json names, the config by its digest,
// under the name ref; corrupt, if not nil, may change a layer's tar (its
// index given) before it is written.
func dockerSave(t *testing.T, path, ref string, img v1.Image, corrupt func(i int, b []byte)) {
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
	type file struct {
		name string
		body []byte
	}
	files := []file{{id.Hex + ".json", cfg}}
	var paths []string
	for i, l := range layers {
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
			corrupt(i, b)
		}
		d, _ := l.DiffID()
		paths = append(paths, d.Hex+"/layer.tar")
		files = append(files, file{d.Hex + "/layer.tar", b})
	}
	m, _ := json.Marshal([]tarball.Descriptor{{Config: id.Hex + ".json", RepoTags: []string{ref}, Layers: paths}})
	files = append(files, file{"manifest.json", m})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, fl := range files {
		if err := tw.WriteHeader(&tar.Header{Name: fl.name, Mode: 0o644, Size: int64(len(fl.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(fl.body)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// storeFiles is every blob, layer directory and the index of the image
// store, with a blob's or the index's bytes.
func (e *imgEnv) storeFiles(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Join(e.data, "images")
	for _, sub := range []string{"blobs/sha256", "layers"} {
		for _, n := range e.storeEntries(t, sub) {
			out[sub+"/"+n] = "dir"
			if sub == "blobs/sha256" {
				b, err := os.ReadFile(filepath.Join(root, sub, n))
				if err != nil {
					t.Fatal(err)
				}
				out[sub+"/"+n] = string(b)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	out["index.json"] = string(b)
	return out
}

// vc load of a docker archive with one byte flipped in a layer, after
// the good archive of the same image: the load fails naming the layer's
// diff_id, the store keeps every blob as it was, and vc save still
// exports the good image (it loads into an empty store and runs).
func TestImagesLoadCorruptLayer(t *testing.T) {
	e := newImgEnv(t)
	ref := "example.com/e2e/flipped:v1"
	img := appImage(t, "flipped")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.tar"), filepath.Join(dir, "bad.tar")
	dockerSave(t, good, ref, img, nil)
	dockerSave(t, bad, ref, img, func(i int, b []byte) {
		if i == 1 {
			b[bytes.Index(b, []byte("echo \"args:"))] ^= 0x01
		}
	})
	if out := e.must(t, "load", "-i", good); !strings.Contains(out, "Loaded image: "+ref) {
		t.Fatalf("load of the good archive: %q", out)
	}
	before := e.storeFiles(t)
	layers, _ := img.Layers()
	diffID, _ := layers[1].DiffID()
	out, errOut, code := e.vc(t, "load", "-i", bad)
	if code == 0 || strings.Contains(out, "Loaded image") || !strings.Contains(errOut, "diff_id "+diffID.String()) || !strings.Contains(errOut, "digest mismatch") {
		t.Fatalf("load of the corrupt archive: exit %d\nstdout: %s\nstderr: %s\nwant a failure naming diff_id %s", code, out, errOut, diffID)
	}
	t.Logf("error: %s", strings.TrimSpace(errOut))
	after := e.storeFiles(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed or removed by the refused load", k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s added by the refused load", k)
		}
	}
	if l := e.storeEntries(t, "tmp"); len(l) != 0 {
		t.Errorf("staging left: %v", l)
	}
	saved := filepath.Join(dir, "saved.tar")
	e.must(t, "save", "-o", saved, ref)
	fresh := newImgEnv(t)
	if out := fresh.must(t, "load", "-i", saved); !strings.Contains(out, "Loaded image: "+ref) {
		t.Fatalf("load of what save exported: %q", out)
	}
	id := "e2e-img-flipped"
	out = fresh.must(t, "run", "--rm", "--name", id, ref)
	wantLines(t, "the saved image", out, "args:default-arg", "env:hello-from-image")
	noLeftovers(t, id)
}

// keptScript reports whether the container ran before (its file in its
// writable layer) and writes that file.
const keptScript = `test -e /srv/app/kept && echo run-again || echo run-first; echo x > /srv/app/kept`

// loadedImage loads appImage(tag) into e's store from a docker archive.
func (e *imgEnv) loadedImage(t *testing.T, ref, tag string) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "img.tar")
	dockerSave(t, archive, ref, appImage(t, tag), nil)
	if out := e.must(t, "load", "-i", archive); !strings.Contains(out, "Loaded image: "+ref) {
		t.Fatalf("load: %q", out)
	}
}

// vc rmi -f of the image of a stopped container removes the name only: the
// container keeps the image's layers, vc restart runs it again with what it
// wrote, and vc rm of it then collects them.
func TestImagesRestartAfterRmiForce(t *testing.T) {
	e := newImgEnv(t)
	ref := "example.com/e2e/kept:v1"
	e.loadedImage(t, ref, "kept")
	id := "e2e-img-rmi-restart"
	t.Cleanup(func() { e.vc(t, "rm", "-f", id) })
	out := e.must(t, "run", "--name", id, "--entrypoint", "/bin/sh", ref, "-c", keptScript)
	wantLines(t, "the first run", out, "run-first")
	if _, errOut, code := e.vc(t, "rmi", ref); code == 0 || !strings.Contains(errOut, id) {
		t.Fatalf("rmi of a stopped container's image: exit %d stderr %q, want refused naming %s", code, errOut, id)
	}
	if out := e.must(t, "rmi", "-f", ref); !strings.Contains(out, "Untagged: "+ref) {
		t.Errorf("rmi -f: %q", out)
	}
	if out := e.must(t, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("images after rmi -f: %q, want none", out)
	}
	if l := e.storeEntries(t, "layers"); len(l) != 2 {
		t.Errorf("layers after rmi -f: %v, want the container's 2 kept", l)
	}
	if out, errOut, code := e.vc(t, "restart", id); code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("restart after rmi -f: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := e.vc(t, "wait", id); code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("wait after restart: exit %d stdout %q stderr %q", code, out, errOut)
	}
	out = e.must(t, "logs", id)
	wantLines(t, "the log of both runs", out, "run-first", "run-again")
	if out, _, _ := e.vc(t, "ps", "-a", "--format", "{{.Names}} {{.Image}}"); !strings.Contains(out, id+" "+ref) {
		t.Errorf("ps -a after the restart: %q, want %s of %s", out, id, ref)
	}
	e.must(t, "rm", id)
	noLeftovers(t, id)
	noCarry(t, id)
	for _, sub := range []string{"layers", "blobs/sha256"} {
		if l := e.storeEntries(t, sub); len(l) != 0 {
			t.Errorf("%s after the container's rm: %v, want its image collected", sub, l)
		}
	}
}

// A vc start or vc restart of a stopped container that fails (its kernel
// gone, then not a kernel, then its command gone) leaves the container as
// it was: listed by ps -a, its writable layer and log in place, no carry
// directory; once the cause is gone, vc start runs it again with what it
// wrote.
func TestImagesRestartFailureKeepsContainer(t *testing.T) {
	e := newImgEnv(t)
	ref := "example.com/e2e/failing:v1"
	e.loadedImage(t, ref, "failing")
	k := filepath.Join(t.TempDir(), "vmlinuz")
	good, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, good, 0o644); err != nil {
		t.Fatal(err)
	}
	id := "e2e-img-restart-fails"
	t.Cleanup(func() { e.vc(t, "rm", "-f", id) })
	out := e.must(t, "run", "--name", id, "--kernel", k, "--entrypoint", "/bin/sh", ref, "-c", keptScript)
	wantLines(t, "the first run", out, "run-first")
	kept := filepath.Join(stateRoot, id, "layer", "upper", "srv", "app", "kept")
	asItWas := func(what string) {
		t.Helper()
		if out, _, _ := e.vc(t, "ps", "-a", "--format", "{{.Names}} {{.State}}"); !strings.Contains(out, id+" stopped\n") {
			t.Errorf("ps -a after %s: %q, want %s stopped", what, out, id)
		}
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("the container's file after %s: %v", what, err)
		}
		if out := e.must(t, "logs", id); !strings.Contains(out, "run-first") {
			t.Errorf("logs after %s: %q", what, out)
		}
		noCarry(t, id)
	}
	if err := os.Remove(k); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.vc(t, "start", id); code == 0 || !strings.Contains(errOut, id) {
		t.Errorf("start with the kernel gone: exit %d stderr %q, want a failure naming %s", code, errOut, id)
	} else {
		t.Logf("start with the kernel gone: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	asItWas("a start that failed before its VM")
	if err := os.WriteFile(k, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.vc(t, "restart", id); code == 0 {
		t.Errorf("restart with no kernel: exit 0, stderr %q", errOut)
	} else {
		t.Logf("restart with not a kernel: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	asItWas("a restart whose VM failed")
	if err := os.WriteFile(k, good, 0o644); err != nil {
		t.Fatal(err)
	}
	// A run that fails in its VM, once what the container wrote is in the
	// new sandbox: its command gone (a whiteout over /bin/sh in its
	// writable layer).
	wh := filepath.Join(stateRoot, id, "layer", "upper", "bin", "sh")
	if err := os.MkdirAll(filepath.Dir(wh), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(wh, unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.vc(t, "start", id); code != 127 {
		t.Errorf("start with /bin/sh gone: exit %d stderr %q, want 127", code, errOut)
	} else {
		t.Logf("start with /bin/sh gone: exit %d: %s", code, strings.TrimSpace(errOut))
	}
	asItWas("a start whose command was missing")
	if err := os.Remove(wh); err != nil {
		t.Errorf("the whiteout after the failed start: %v", err)
	}
	if out, errOut, code := e.vc(t, "start", id); code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("start with the kernel back: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := e.vc(t, "wait", id); code != 0 || strings.TrimSpace(out) != "0" {
		t.Fatalf("wait: exit %d stdout %q stderr %q", code, out, errOut)
	}
	wantLines(t, "the log after the failures", e.must(t, "logs", id), "run-first", "run-again")
	e.must(t, "rm", id)
	noLeftovers(t, id)
	noCarry(t, id)
}
