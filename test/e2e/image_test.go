package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImageFreshByDigest: `vc image build` and `vc check` judge the guest
// image by the agent's content. make agent rewriting vc-agent with the
// same bytes (new inode, newer mtime) keeps the image current and image
// build finds it; a changed agent makes it stale.
func TestImageFreshByDigest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	agentBytes, err := os.ReadFile(filepath.Join(filepath.Dir(vcBin), "vc-agent"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "vc-agent")
	install := func(b []byte, mtime time.Time) {
		t.Helper()
		tmp := agent + ".new"
		if err := os.WriteFile(tmp, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, agent); err != nil {
			t.Fatal(err)
		}
	}
	install(agentBytes, time.Now().Add(-time.Hour))
	t.Setenv("VC_AGENT", agent)
	// A data root of its own (the kernel comes from the shared cache).
	data := filepath.Join(dir, "data")
	vc := func(args ...string) string {
		t.Helper()
		out, err := vcCmdData(ctx, data, args...)
		if err != nil {
			t.Fatalf("vc %v: %v\n%s", args, err, out)
		}
		return out
	}
	check := func() (image, imageErr string) {
		t.Helper()
		var r struct {
			Image      string `json:"image"`
			ImageError string `json:"image_error"`
		}
		out := vc("check", "--json")
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("vc check --json: %v\n%s", err, out)
		}
		return r.Image, r.ImageError
	}
	// The image's directory: the first line of what it printed that is a
	// path (its progress log goes to stderr, mixed in here).
	built := func(out string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "/") {
				return l
			}
		}
		return ""
	}

	first := built(vc("image", "build"))
	if img, ierr := check(); img == "" || ierr != "" {
		t.Fatalf("vc check after image build: image %q, error %q", img, ierr)
	}
	st, err := os.Stat(filepath.Join(first, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}

	install(agentBytes, time.Now().Add(time.Hour))
	if img, ierr := check(); img == "" || ierr != "" {
		t.Fatalf("vc check after the agent was rewritten with identical content: image %q, error %q", img, ierr)
	}
	if again := built(vc("image", "build")); again != first {
		t.Fatalf("image build with an identical agent made %s, want the cached %s", again, first)
	}
	if st2, err := os.Stat(filepath.Join(first, "manifest.json")); err != nil || !st2.ModTime().Equal(st.ModTime()) {
		t.Fatalf("image build with an identical agent rewrote the image: %v", err)
	}

	changed := append(append([]byte(nil), agentBytes...), 0)
	install(changed, time.Now().Add(-2*time.Hour))
	if _, ierr := check(); !strings.Contains(ierr, "not current") {
		t.Fatalf("vc check with a changed (and older) agent: image error %q, want not current", ierr)
	}
	if next := built(vc("image", "build")); next == first {
		t.Fatalf("image build with a changed agent kept %s", first)
	}
	if img, ierr := check(); img == "" || ierr != "" {
		t.Fatalf("vc check after building for the changed agent: image %q, error %q", img, ierr)
	}
}

// vcCmdData is vcCmd with another data root.
func vcCmdData(ctx context.Context, data string, args ...string) (string, error) {
	return vcCmd(ctx, nil, append([]string{"--data-root", data}, args...)...)
}
