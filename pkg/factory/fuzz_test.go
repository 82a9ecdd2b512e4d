package factory

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// within runs fn and fails t if it has not returned after d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return in %v", what, d)
	}
}

// FuzzOpenFactory reads a fuzzed manifest.json in a factory directory
// whose files (memory, state, the stand-in QEMU, kernel and initrd under
// @BASE@) are whole. It returns soon, whatever files the manifest names;
// a refused template's error wraps ErrTemplateInvalid and
// errdefs.ErrDataLoss; an accepted one has the current version, reads
// back the same from its own JSON, and Fits answers for the template's
// own configuration without a panic, naming a field when it refuses.
func FuzzOpenFactory(f *testing.F) {
	dir, _ := fakeFactory(f)
	b, err := os.ReadFile(filepath.Join(dir, factoryManifestName))
	if err != nil {
		f.Fatal(err)
	}
	seed := bytes.ReplaceAll(b, []byte(filepath.Dir(dir)), []byte("@BASE@"))
	f.Add(seed)
	f.Add(bytes.Replace(seed, []byte(`"version":2`), []byte(`"version":1`), 1))
	f.Add([]byte(`{"version":2,"memory_mib":0,"state":{"size":17}}`))
	f.Fuzz(func(t *testing.T, manifest []byte) {
		dir, cfg := fakeFactory(t)
		manifest = bytes.ReplaceAll(manifest, []byte("@BASE@"), []byte(filepath.Dir(dir)))
		if err := os.WriteFile(filepath.Join(dir, factoryManifestName), manifest, 0o600); err != nil {
			t.Fatal(err)
		}
		var fac *Factory
		var err error
		within(t, 10*time.Second, "OpenFactory", func() { fac, err = Open(dir) })
		if err != nil {
			if !errors.Is(err, ErrTemplateInvalid) || !errors.Is(err, errdefs.ErrDataLoss) {
				t.Fatalf("a refused template: %v, want ErrTemplateInvalid and ErrDataLoss", err)
			}
			return
		}
		m := fac.Manifest()
		if m.Version != factoryVersion {
			t.Fatalf("version %d accepted", m.Version)
		}
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("the accepted manifest does not marshal: %v", err)
		}
		var again Manifest
		if err := json.Unmarshal(j, &again); err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("the accepted manifest reads back as %+v (%v), not %+v", again, err, m)
		}
		within(t, 10*time.Second, "Fits", func() { err = fac.Fits(cfg) })
		if err != nil && !strings.Contains(err.Error(), "hypervisor.") && !strings.Contains(err.Error(), "network") {
			t.Fatalf("Fits refused naming no field: %v", err)
		}
	})
}

// serveOne hands req to the cache c's server over a socket pair, as a
// client would send it, and returns what the server answered (nothing if
// it closed the connection).
func serveOne(t *testing.T, c *factoryCache, req []byte) []byte {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "cache")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	server, client := conn(fds[0]), conn(fds[1])
	defer client.Close()
	within(t, cacheTakeTimeout+5*time.Second, "serve", func() {
		go func() {
			client.Write(req)
			client.CloseWrite()
		}()
		c.serve(server)
	})
	client.SetDeadline(time.Now().Add(time.Second))
	// The server does not read past the request's first value: closing
	// with bytes unread, it resets the connection, which the client sees
	// after the answer (as cacheCall, which reads one value, never does).
	rep, err := io.ReadAll(client)
	if err != nil && !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("reading the answer: %v", err)
	}
	return rep
}

// FuzzCacheServe sends a fuzzed request to a cache with no VM ready. A
// request that decodes within its first maxCacheRequest bytes gets one answer that decodes: a status for
// "status", the stop for "stop", an error for a take (none ready, or a bad
// sandbox id, named) and for an unknown op (named); one that does not
// decode gets none. Either way the server returns.
func FuzzCacheServe(f *testing.F) {
	for _, r := range []string{`{"op":"status"}`, `{"op":"stop"}`, `{"op":"take","sandbox":"sb-1"}`, `{"op":"take","sandbox":"../x"}`, `{"op":"take"}`, `{"op":"nope"}`, `{"op":`, `{"op":"status"}{"op":"stop"}`} {
		f.Add([]byte(r))
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		stopped := false
		c := &factoryCache{dir: t.TempDir(), size: 1, log: slog.New(slog.DiscardHandler), stop: func() { stopped = true },
			running: map[*cachedVM]bool{}, wake: make(chan struct{}, 1)}
		rep := serveOne(t, c, req)
		var want cacheRequest
		if err := json.NewDecoder(io.LimitReader(bytes.NewReader(req), maxCacheRequest)).Decode(&want); err != nil {
			if len(rep) != 0 {
				t.Fatalf("a request that does not decode (%v) got an answer: %q", err, rep)
			}
			return
		}
		var got cacheReply
		if err := json.Unmarshal(rep, &got); err != nil {
			t.Fatalf("answer %q to %+v does not decode: %v", rep, want, err)
		}
		switch want.Op {
		case "status":
			if got.Status == nil || got.Status.Size != 1 || got.Error != "" {
				t.Fatalf("status: %+v", got)
			}
		case "stop":
			if !stopped || got.Error != "" {
				t.Fatalf("stop: %+v, stopped %v", got, stopped)
			}
		case "take":
			if got.Error == "" || got.VMDir != "" || !(strings.Contains(got.Error, "no vm ready") || strings.Contains(got.Error, "sandbox")) {
				t.Fatalf("take with no vm ready: %+v", got)
			}
		default:
			if !strings.Contains(got.Error, "unknown op") {
				t.Fatalf("op %q: %+v", want.Op, got)
			}
		}
		if stopped != (want.Op == "stop") {
			t.Fatalf("op %q stopped the cache", want.Op)
		}
	})
}

// FuzzCacheReply has a fake cache answer a take with fuzzed bytes
// (@FACTORY@ is the factory's directory). The sandbox takes a VM only
// from a directory of the factory's cache: whatever the answer, nothing
// outside <factory>/cache changes, and an answer naming another
// directory is refused.
func FuzzCacheReply(f *testing.F) {
	for _, r := range []string{`{"vm_dir":"@FACTORY@/cache/cache-0123"}`, `{"vm_dir":"/etc"}`, `{"vm_dir":"@FACTORY@/cache/cache-x/../../outside"}`,
		`{"vm_dir":"@FACTORY@/cache"}`, `{"vm_dir":"@FACTORY@/cache/other"}`, `{"error":"no vm ready"}`, `{"status":{"pid":1}}`, `{`} {
		f.Add([]byte(r))
	}
	f.Fuzz(func(t *testing.T, rep []byte) {
		base := t.TempDir()
		factory := filepath.Join(base, "factory")
		for _, d := range []string{filepath.Join(factory, cacheDirName, "cache-0123", "vm"), filepath.Join(base, "outside")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		l, err := net.Listen("unix", filepath.Join(factory, cacheSocketName))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		rep = bytes.ReplaceAll(rep, []byte("@FACTORY@"), []byte(factory))
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			json.NewDecoder(c).Decode(&cacheRequest{})
			c.Write(rep)
		}()
		outside := func() []string {
			var out []string
			filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
				if strings.HasPrefix(p, filepath.Join(factory, cacheDirName)+"/") {
					return nil
				}
				out = append(out, p)
				return nil
			})
			return out
		}
		before := outside()
		var dir string
		within(t, 10*time.Second, "takeCachedVM", func() {
			_, dir, err = takeCachedVM(context.Background(), factory, "qemu", "sb-1", slog.New(slog.DiscardHandler))
		})
		if err == nil {
			t.Fatalf("took a VM from answer %q: there is none", rep)
		}
		if dir != "" {
			t.Fatalf("answer %q: directory %s with error %v", rep, dir, err)
		}
		if after := outside(); !reflect.DeepEqual(before, after) {
			t.Fatalf("answer %q changed files outside the cache: %v, were %v", rep, after, before)
		}
	})
}
