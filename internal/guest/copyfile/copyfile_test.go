package copyfile

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

func wantErr(t *testing.T, err, sentinel error, field string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	if !strings.HasPrefix(err.Error(), field+":") {
		t.Fatalf("err = %q, does not name %q first", err, field)
	}
}

func TestCheckPath(t *testing.T) {
	c, err := New("/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/run/a", "/run/a/b.txt", "/run/kata-containers/shared/x/..data", "/run/...", "/run/.hidden"} {
		if _, err := c.CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{
		"/run/../etc/passwd",
		"/run/x/../../etc",
		"relative",
		"run/a",
		"/run",
		"/run/",
		"/etc/shadow",
		"/runx/a",
		"/",
		"",
		"/run/a//b",
		"/run/a/",
		"/run/./a",
		"/run/a/.",
		"/run/a\x00b",
		"/../run/a",
		"//run/a",
	} {
		t.Run(p, func(t *testing.T) {
			_, err := c.CheckPath(p)
			wantErr(t, err, errdefs.ErrInvalidArgument, "path")
			// Copy refuses it the same way, before touching anything.
			err = c.Copy(&pb.CopyFileRequest{Path: p, FileSize: 1, Data: []byte("x")})
			wantErr(t, err, errdefs.ErrInvalidArgument, "path")
		})
	}
	for _, root := range []string{"", "run", "/run/", "/run/../etc"} {
		if _, err := New(root); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("New(%q) = %v", root, err)
		}
	}
	slash, _ := New("/")
	if _, err := slash.CheckPath("/a"); err != nil {
		t.Errorf("root /: CheckPath(/a) = %v", err)
	}
	if _, err := slash.CheckPath("/"); err == nil {
		t.Error("root /: CheckPath(/) accepted")
	}
}

func TestSizes(t *testing.T) {
	c, _ := New(t.TempDir())
	p := c.Root() + "/f"
	for _, tc := range []struct {
		size, off int64
		n         int
		field     string
	}{
		{-1, 0, 0, "file_size"},
		{MaxFileSize + 1, 0, 0, "file_size"},
		{10, -1, 0, "offset"},
		{10, 11, 0, "offset"},
		{10, 8, 3, "data"},
		{0, 0, 1, "data"},
	} {
		err := c.Copy(&pb.CopyFileRequest{Path: p, FileSize: tc.size, Offset: tc.off, Data: make([]byte, tc.n)})
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.field)
	}
	err := c.Copy(&pb.CopyFileRequest{Path: p, FileMode: unix.S_IFCHR | 0o644})
	wantErr(t, err, errdefs.ErrInvalidArgument, "file_mode")
	if ents, _ := os.ReadDir(c.Root()); len(ents) != 0 {
		t.Fatalf("refused requests left %v", ents)
	}
}

// symlinkRoot makes a root holding links that lead out of it or back in.
func symlinkRoot(t *testing.T) (*Copier, string) {
	t.Helper()
	outside := t.TempDir()
	root := t.TempDir()
	os.MkdirAll(root+"/d", 0o755)
	os.Symlink(outside, root+"/out")         // a link out of the root
	os.Symlink("..", root+"/d/up")           // a link that stays inside
	os.Symlink("d", root+"/dlink")           // a link to a directory inside
	os.Symlink(outside+"/victim", root+"/f") // a final component that is a link
	os.WriteFile(outside+"/victim", []byte("original"), 0o644)
	os.WriteFile(root+"/plain", []byte("x"), 0o644)
	c, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	return c, outside
}

func TestSymlinkComponents(t *testing.T) {
	c, outside := symlinkRoot(t)
	root := c.Root()
	for _, p := range []string{
		root + "/out/passwd",
		root + "/out/new/dir/file",
		root + "/d/up/plain",
		root + "/d/up/d/x",
		root + "/dlink/x",
		root + "/f",
	} {
		t.Run(strings.TrimPrefix(p, root), func(t *testing.T) {
			for _, mode := range []uint32{0o644, unix.S_IFDIR | 0o755} {
				err := c.Copy(&pb.CopyFileRequest{Path: p, FileSize: 3, Data: []byte("bad"), FileMode: mode})
				wantErr(t, err, errdefs.ErrInvalidArgument, "path")
				if !strings.Contains(err.Error(), "symbolic link") {
					t.Fatalf("err = %v, does not say why", err)
				}
			}
		})
	}
	err := c.Copy(&pb.CopyFileRequest{Path: root + "/plain/x", FileSize: 1, Data: []byte("x")})
	wantErr(t, err, errdefs.ErrInvalidArgument, "path")
	if b, _ := os.ReadFile(outside + "/victim"); string(b) != "original" {
		t.Fatalf("victim changed to %q", b)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("something was written outside the root: %v", ents)
	}
}

func TestChunked(t *testing.T) {
	c, _ := New(t.TempDir())
	p := c.Root() + "/a/b/file.txt"
	content := []byte("0123456789abcdefghij")
	chunks := []struct{ off, end int }{{0, 7}, {7, 14}, {14, 20}}
	for i, ch := range chunks {
		err := c.Copy(&pb.CopyFileRequest{Path: p, FileSize: int64(len(content)), Offset: int64(ch.off),
			Data: content[ch.off:ch.end], FileMode: 0o640, DirMode: 0o750, Uid: 1000, Gid: 1001})
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		_, err = os.Stat(p)
		if last := i == len(chunks)-1; last != (err == nil) {
			t.Fatalf("after chunk %d: stat = %v", i, err)
		}
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("content %q, %v", got, err)
	}
	var st unix.Stat_t
	unix.Stat(p, &st)
	if st.Mode != unix.S_IFREG|0o640 || st.Uid != 1000 || st.Gid != 1001 {
		t.Fatalf("file mode %o uid %d gid %d", st.Mode, st.Uid, st.Gid)
	}
	unix.Stat(c.Root()+"/a/b", &st)
	if st.Mode != unix.S_IFDIR|0o750 {
		t.Fatalf("dir mode %o", st.Mode)
	}
	ents, _ := os.ReadDir(c.Root() + "/a/b")
	if len(ents) != 1 || c.Pending() != 0 {
		t.Fatalf("left behind: %v, %d pending", ents, c.Pending())
	}
}

func TestChunkOrder(t *testing.T) {
	c, _ := New(t.TempDir())
	p := c.Root() + "/f"
	req := func(off int64, data string) *pb.CopyFileRequest {
		return &pb.CopyFileRequest{Path: p, FileSize: 10, Offset: off, Data: []byte(data), FileMode: 0o600}
	}
	// A chunk before any first one.
	wantErr(t, c.Copy(req(5, "xxxxx")), errdefs.ErrFailedPrecondition, "offset")
	if err := c.Copy(req(0, "abcd")); err != nil {
		t.Fatal(err)
	}
	// A gap is refused; an overlap (a resent chunk) is fine.
	wantErr(t, c.Copy(req(6, "ghij")), errdefs.ErrInvalidArgument, "offset")
	if err := c.Copy(req(2, "CDEF")); err != nil {
		t.Fatal(err)
	}
	// Another size in the middle is refused.
	err := c.Copy(&pb.CopyFileRequest{Path: p, FileSize: 11, Offset: 6, Data: []byte("g")})
	wantErr(t, err, errdefs.ErrInvalidArgument, "file_size")
	// A new first chunk restarts the copy and drops the old temporary file.
	if err := c.Copy(req(0, "ABCDEF")); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(c.Root()); len(ents) != 1 {
		t.Fatalf("restart left %d files", len(ents))
	}
	if err := c.Copy(req(6, "ghij")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "ABCDEFghij" {
		t.Fatalf("content %q", b)
	}
}

func TestEmptyAndReplace(t *testing.T) {
	c, _ := New(t.TempDir())
	p := c.Root() + "/f"
	os.WriteFile(p, []byte("old content"), 0o600)
	if err := c.Copy(&pb.CopyFileRequest{Path: p, FileMode: 0o644}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Size() != 0 || st.Mode().Perm() != 0o644 {
		t.Fatalf("empty file: %v %v", st, err)
	}
	// A directory is not replaced by a file.
	os.Mkdir(c.Root()+"/dir", 0o755)
	err = c.Copy(&pb.CopyFileRequest{Path: c.Root() + "/dir", FileSize: 1, Data: []byte("x")})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "path")
	if ents, _ := os.ReadDir(c.Root()); len(ents) != 2 {
		t.Fatalf("failed copy left files: %v", ents)
	}
}

func TestDirAndSymlink(t *testing.T) {
	c, _ := New(t.TempDir())
	root := c.Root()
	if err := c.Copy(&pb.CopyFileRequest{Path: root + "/cm/..2024", FileMode: unix.S_IFDIR | 0o711, Uid: 5, Gid: 6, FileSize: 4096}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(root+"/cm/..2024", &st)
	if st.Mode != unix.S_IFDIR|0o711 || st.Uid != 5 || st.Gid != 6 {
		t.Fatalf("dir mode %o uid %d gid %d", st.Mode, st.Uid, st.Gid)
	}
	link := func(p, target string) error {
		return c.Copy(&pb.CopyFileRequest{Path: p, FileMode: unix.S_IFLNK | 0o777, FileSize: int64(len(target)), Data: []byte(target), Uid: 7, Gid: 8})
	}
	if err := link(root+"/cm/..data", "..2024"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(root + "/cm/..data"); got != "..2024" {
		t.Fatalf("link = %q", got)
	}
	unix.Lstat(root+"/cm/..data", &st)
	if st.Uid != 7 || st.Gid != 8 {
		t.Fatalf("link owner %d:%d", st.Uid, st.Gid)
	}
	// Replacing a link is atomic and allowed.
	os.Mkdir(root+"/cm/..2025", 0o755)
	if err := link(root+"/cm/..data", "..2025"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(root + "/cm/..data"); got != "..2025" {
		t.Fatalf("link = %q", got)
	}
	for _, target := range []string{"/etc/passwd", "../../etc", "../" + strings.Repeat("x/../", 3) + "../..", ""} {
		wantErr(t, link(root+"/cm/bad", target), errdefs.ErrInvalidArgument, "data")
	}
	// A directory over a file is refused.
	os.WriteFile(root+"/file", nil, 0o644)
	err := c.Copy(&pb.CopyFileRequest{Path: root + "/file", FileMode: unix.S_IFDIR | 0o755})
	wantErr(t, err, errdefs.ErrAlreadyExists, "path")
}

func TestStaleTransfer(t *testing.T) {
	c, _ := New(t.TempDir())
	now := time.Now()
	c.now = func() time.Time { return now }
	if err := c.Copy(&pb.CopyFileRequest{Path: c.Root() + "/d/f", FileSize: 10, Data: []byte("abc")}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(c.Root() + "/d"); len(ents) != 1 || c.Pending() != 1 {
		t.Fatalf("want one temporary file, have %v", ents)
	}
	now = now.Add(staleAfter + time.Second)
	if err := c.Copy(&pb.CopyFileRequest{Path: c.Root() + "/other", FileSize: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(c.Root() + "/d"); len(ents) != 0 || c.Pending() != 0 {
		t.Fatalf("stale temporary file not removed: %v", ents)
	}
	err := c.Copy(&pb.CopyFileRequest{Path: c.Root() + "/d/f", FileSize: 10, Offset: 3, Data: []byte("def")})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "offset")
}
