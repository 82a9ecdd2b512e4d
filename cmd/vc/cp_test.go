package main

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCpDest(t *testing.T) {
	// The container: /dir a directory, /file a file.
	stat := func(_ context.Context, p string) (bool, bool, error) {
		switch p {
		case "/", "/dir":
			return true, true, nil
		case "/file", "/dir/file":
			return true, false, nil
		}
		return false, false, nil
	}
	for _, tc := range []struct {
		dst, dir, name, err string
	}{
		{dst: "/dir", dir: "/dir", name: "src"},
		{dst: "/dir/", dir: "/dir", name: "src"},
		{dst: "/dir/.", dir: "/dir", name: "src"},
		{dst: "/dir/new", dir: "/dir", name: "new"},
		{dst: "/new", dir: "/", name: "new"},
		{dst: "/file", dir: "/", name: "file"},
		{dst: "/dir/file", dir: "/dir", name: "file"},
		{dst: "/missing/", err: `DEST "/missing/": the destination directory must exist: could not find the file /missing in container ctr`},
		{dst: "/missing/.", err: `DEST "/missing/.": the destination directory must exist: could not find the file /missing in container ctr`},
		{dst: "/missing/x", err: `DEST "/missing/x": could not find the file /missing in container ctr`},
		{dst: "/file/", err: `DEST "/file/": /file in container ctr is not a directory`},
		{dst: "/file/x", err: `DEST "/file/x": /file in container ctr is not a directory`},
	} {
		dir, name, err := cpDest(context.Background(), "ctr", tc.dst, "src", stat)
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err+": "+errText(tc.err)):
			t.Errorf("cpDest(%q) = %q, %q, %v; want the error %q", tc.dst, dir, name, err, tc.err)
		case tc.err == "" && (err != nil || dir != tc.dir || name != tc.name):
			t.Errorf("cpDest(%q) = %q, %q, %v; want %q, %q", tc.dst, dir, name, err, tc.dir, tc.name)
		}
	}
}

// errText is the errdefs sentinel's text cpDest's errors end with.
func errText(msg string) string {
	if strings.Contains(msg, "could not find") {
		return errdefs.ErrNotFound.Error()
	}
	return errdefs.ErrInvalidArgument.Error()
}

// A stopped container's files are reached on the host: its paths resolve
// as in the container (an absolute link is the container's), and nothing
// the container made leads out of its root, reading or writing.
func TestStoppedTarget(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o600)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "conf"), []byte("ctr"), 0o644)
	os.Symlink("/etc", filepath.Join(root, "abs"))                         // the container's /etc
	os.Symlink(outside, filepath.Join(root, "out"))                        // the host's dir, in the container: /<outside>, missing
	os.Symlink("../../../../../../../"+outside, filepath.Join(root, "up")) // climbs to the container's /
	tg := stoppedTarget{root: root}
	ctx := context.Background()
	for p, want := range map[string][2]bool{"/etc": {true, true}, "/abs": {true, true}, "/etc/conf": {true, false}, "/out": {false, false}, "/up": {false, false}, "/missing": {false, false}} {
		exists, isDir, err := tg.stat(ctx, p)
		if err != nil || exists != want[0] || isDir != want[1] {
			t.Errorf("stat %s = %v, %v, %v; want %v", p, exists, isDir, err, want)
		}
	}
	// Written through the link, into the container's /etc.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "new", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1, Uid: 1234, Gid: 5678})
	tw.Write([]byte("n"))
	tw.Close()
	if err := tg.unpack(ctx, &buf, "/abs"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "etc", "new"))
	if err != nil {
		t.Fatalf("unpacked through /abs: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("unpacked file owned by %d:%d, want the stream's 1234:5678", st.Uid, st.Gid)
	}
	if err := tg.unpack(ctx, bytes.NewReader(nil), "/out"); err == nil {
		t.Errorf("unpacking into /out (a link to the host's %s) succeeded", outside)
	}
	// Read out: a link is a link, never followed out.
	buf.Reset()
	if err := tg.pack(ctx, &buf, "/up"); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	h, err := tr.Next()
	if err != nil || h.Typeflag != tar.TypeSymlink || h.Name != "up" {
		t.Fatalf("pack /up: %+v, %v; want the link itself", h, err)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("pack /up: more than the link (%v)", err)
	}
	buf.Reset()
	if err := tg.pack(ctx, &buf, "/abs/conf"); err != nil {
		t.Fatal(err)
	}
	tr = tar.NewReader(&buf)
	if h, err := tr.Next(); err != nil || h.Name != "conf" {
		t.Fatalf("pack /abs/conf: %+v, %v", h, err)
	}
	if b, _ := io.ReadAll(tr); string(b) != "ctr" {
		t.Errorf("pack /abs/conf: %q, want the container's /etc/conf", b)
	}
}
