package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func noUsers() (map[string][]string, error) { return nil, nil }

func TestCreateListRemove(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Create("data", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "data" || v.Driver != "local" || v.Mountpoint != s.Mountpoint("data") || v.CreatedAt == "" {
		t.Fatalf("created %+v", v)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
		t.Fatalf("mountpoint %s: %v", v.Mountpoint, err)
	}
	os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("kept"), 0o644)
	// Create of an existing name returns it, content and all.
	again, err := s.Create("data", map[string]string{"x": "y"})
	if err != nil || again.CreatedAt != v.CreatedAt || len(again.Labels) != 0 {
		t.Fatalf("create again: %+v %v", again, err)
	}
	if b, _ := os.ReadFile(filepath.Join(v.Mountpoint, "f")); string(b) != "kept" {
		t.Fatalf("create again lost the content: %q", b)
	}
	anon := NewName()
	if len(anon) != 64 {
		t.Fatalf("NewName %q", anon)
	}
	if _, err := s.Create(anon, map[string]string{AnonymousLabel: ""}); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	// Sorted by name: the anonymous volume's random hex name may sort
	// either side of "data".
	a, d := 0, 1
	if anon > "data" {
		a, d = 1, 0
	}
	if err != nil || len(list) != 2 || list[a].Name != anon || list[d].Name != "data" || !list[a].Anonymous() || list[d].Anonymous() {
		t.Fatalf("list: %+v %v", list, err)
	}
	used := func() (map[string][]string, error) { return map[string][]string{"data": {"c1 (stopped)"}}, nil }
	err = s.Remove("data", used)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "c1 (stopped)") {
		t.Fatalf("remove of a used volume: %v; want refused naming c1", err)
	}
	if err := s.Remove("data", noUsers); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("data"); !errdefs.IsNotFound(err) {
		t.Fatalf("get after remove: %v", err)
	}
	if err := s.Remove("data", noUsers); !errdefs.IsNotFound(err) {
		t.Fatalf("remove of a missing volume: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"ab", "my-vol_1.x", "0a"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", ".a", "-a", "a/b", "a:b", "../x", "a b"} {
		err := CheckName(bad)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "volume name") {
			t.Errorf("CheckName(%q): %v, want an invalid argument naming the field", bad, err)
		}
	}
	s, _ := Open(t.TempDir())
	if _, err := s.Create("../escape", nil); err == nil {
		t.Fatal("created ../escape")
	}
}

func TestPrune(t *testing.T) {
	s, _ := Open(t.TempDir())
	anonUsed, anonFree := NewName(), NewName()
	for _, n := range []string{anonUsed, anonFree} {
		if _, err := s.Create(n, map[string]string{AnonymousLabel: ""}); err != nil {
			t.Fatal(err)
		}
	}
	s.Create("named", nil)
	os.WriteFile(filepath.Join(s.Mountpoint(anonFree), "f"), make([]byte, 1000), 0o644)
	os.WriteFile(filepath.Join(s.Mountpoint("named"), "f"), make([]byte, 10), 0o644)
	used := func() (map[string][]string, error) { return map[string][]string{anonUsed: {"c"}}, nil }
	removed, n, err := s.Prune(false, used)
	if err != nil || len(removed) != 1 || removed[0] != anonFree || n != 1000 {
		t.Fatalf("prune: %v %d %v; want %s, 1000 bytes", removed, n, err, anonFree)
	}
	removed, n, err = s.Prune(true, used)
	if err != nil || len(removed) != 1 || removed[0] != "named" || n != 10 {
		t.Fatalf("prune --all: %v %d %v; want named, 10 bytes", removed, n, err)
	}
	list, _ := s.List()
	if len(list) != 1 || list[0].Name != anonUsed {
		t.Fatalf("left: %+v", list)
	}
	// Nothing of the removal stays behind.
	ents, _ := os.ReadDir(s.root)
	for _, e := range ents {
		if e.Name() != ".lock" && e.Name() != ".users" && e.Name() != anonUsed {
			t.Errorf("left in the store: %s", e.Name())
		}
	}
}

func TestCopyUp(t *testing.T) {
	s, _ := Open(t.TempDir())
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "app/sub"), 0o750)
	os.WriteFile(filepath.Join(root, "app/sub/f"), []byte("image"), 0o640)
	os.Symlink("sub/f", filepath.Join(root, "app/link"))
	os.Chmod(filepath.Join(root, "app"), os.ModeSticky|0o777)
	// A link out of the root resolves inside it.
	os.Symlink("/etc", filepath.Join(root, "esc"))
	s.Create("v1", nil)
	if err := s.CopyUp("v1", root, "/app"); err != nil {
		t.Fatal(err)
	}
	mp := s.Mountpoint("v1")
	if b, err := os.ReadFile(filepath.Join(mp, "sub/f")); err != nil || string(b) != "image" {
		t.Fatalf("copied file: %q %v", b, err)
	}
	if l, _ := os.Readlink(filepath.Join(mp, "link")); l != "sub/f" {
		t.Errorf("link %q", l)
	}
	if fi, _ := os.Stat(mp); fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("volume dir mode %v, want the image dir's 1777", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(mp, "sub/f")); fi.Mode().Perm() != 0o640 {
		t.Errorf("file mode %v", fi.Mode())
	}
	// Not empty any more: a second copy leaves it.
	os.WriteFile(filepath.Join(root, "app/new"), nil, 0o644)
	os.Remove(filepath.Join(mp, "sub/f"))
	if err := s.CopyUp("v1", root, "/app"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mp, "new")); err == nil {
		t.Error("copied into a volume that was not empty")
	}
	s.Create("v2", nil)
	if err := s.CopyUp("v2", root, "/esc"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.Mountpoint("v2")); len(ents) != 0 {
		t.Errorf("a link out of the root copied the host's /etc: %d entries", len(ents))
	}
}

// A container being made holds off Remove until it is on record, not
// Create.
func TestReserve(t *testing.T) {
	s, _ := Open(t.TempDir())
	s.Create("v1", nil)
	release, err := s.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("v2", nil); err != nil {
		t.Fatalf("create while reserved: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Remove("v1", noUsers) }()
	select {
	case err := <-done:
		t.Fatalf("remove ran while reserved: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("remove still waits after the release")
	}
}
