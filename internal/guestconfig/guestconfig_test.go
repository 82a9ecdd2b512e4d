package guestconfig

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

// installAgent writes b as the installed agent at p the way a rebuild
// does: a new file renamed over the old one (another inode), whose mtime
// is mtime.
func installAgent(t *testing.T, p string, b []byte, mtime time.Time) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// TestCurrentByDigest: the current image stays current while the installed
// agent has the same content, whatever its time, and is not once the
// content differs, even at the same size.
func TestCurrentByDigest(t *testing.T) {
	agentBytes, err := os.ReadFile(testutil.AgentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "vc-agent")
	installAgent(t, agent, agentBytes, time.Now().Add(-time.Hour))
	t.Setenv("VC_AGENT", agent)
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not really a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	dataRoot := filepath.Join(dir, "data")
	// A user kernel without modules: nothing to download, a small initrd.
	opts := guestimage.Options{Kernel: kernel, Modules: []string{}, Compression: guestimage.CompressNone, CacheDir: filepath.Join(dir, "cache")}
	ctx := context.Background()
	img, err := Build(ctx, dataRoot, opts)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := Current(dataRoot)
	if err != nil {
		t.Fatalf("just built: %v", err)
	}
	if cur.Key != img.Key {
		t.Fatalf("current %s, built %s", cur.Key, img.Key)
	}

	// make agent again: same bytes, a new inode, an mtime after the image.
	installAgent(t, agent, agentBytes, time.Now().Add(time.Hour))
	if _, err := Current(dataRoot); err != nil {
		t.Fatalf("agent rebuilt with identical content: %v", err)
	}
	if !UpToDate(img) {
		t.Fatal("UpToDate false for an identical agent")
	}
	again, err := Build(ctx, dataRoot, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Dir != img.Dir || !again.Created.Equal(img.Created) {
		t.Fatalf("rebuild of identical inputs made %s (%v), want the cached %s (%v)", again.Dir, again.Created, img.Dir, img.Created)
	}
	if _, err := Current(dataRoot); err != nil {
		t.Fatalf("after image build with an identical agent: %v", err)
	}

	// Same size, one byte different (in the middle: nothing is built
	// from it): stale by its digest, whatever its time.
	changed := append([]byte(nil), agentBytes...)
	changed[len(changed)/2] ^= 0xff
	installAgent(t, agent, changed, img.Created.Add(-time.Hour))
	_, err = Current(dataRoot)
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("agent changed at the same size and an older mtime: got %v, want ErrNotFound naming the sha256", err)
	}
	if UpToDate(img) {
		t.Fatal("UpToDate true for a changed agent")
	}

	// A bigger agent: stale by its size, and image build makes a new
	// current image for it.
	installAgent(t, agent, append(append([]byte(nil), agentBytes...), 0), time.Now())
	if _, err = Current(dataRoot); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("agent one byte longer: got %v, want ErrNotFound naming the sizes", err)
	}
	next, err := Build(ctx, dataRoot, opts)
	if err != nil {
		t.Fatal(err)
	}
	if next.Dir == img.Dir {
		t.Fatalf("changed agent reused image %s", img.Dir)
	}
	if cur, err := Current(dataRoot); err != nil || cur.Key != next.Key {
		t.Fatalf("after building for the changed agent: current %v, %v; want %s", cur, err, next.Key)
	}
}
