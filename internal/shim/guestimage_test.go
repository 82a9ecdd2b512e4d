package shim

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

// TestGuestImageByDigest: the shim boots the current image while the
// installed agent has its content (rewritten by make agent with a newer
// mtime included), and refuses it once the agent changed.
func TestGuestImageByDigest(t *testing.T) {
	agentBytes, err := os.ReadFile(testutil.AgentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "vc-agent")
	install := func(b []byte, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(agent+".new", b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(agent+".new", mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(agent+".new", agent); err != nil {
			t.Fatal(err)
		}
	}
	install(agentBytes, time.Now().Add(-time.Hour))
	t.Setenv("VC_AGENT", agent)
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not really a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	img, err := guestconfig.Build(context.Background(), data, guestimage.Options{Kernel: kernel, Modules: []string{}, Compression: guestimage.CompressNone, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}

	install(agentBytes, time.Now().Add(time.Hour))
	k, i, err := guestImage(data, "", "", false)
	if err == nil {
		// Through the current link: the same files as the image built.
		k, _ = filepath.EvalSymlinks(k)
		i, _ = filepath.EvalSymlinks(i)
	}
	if err != nil || k != img.Kernel || i != img.Initrd {
		t.Fatalf("agent rewritten with identical content: %q %q %v; want %s %s", k, i, err, img.Kernel, img.Initrd)
	}

	changed := append([]byte(nil), agentBytes...)
	changed[len(changed)/2] ^= 0xff
	install(changed, img.Created.Add(-time.Hour))
	if _, _, err := guestImage(data, "", "", false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("changed agent (same size, older mtime): %v, want ErrNotFound", err)
	}
}
