package tarcopy

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// A container controls the tar stream vc cp unpacks on the host (its tar
// may be anything): nothing in it may land outside the destination.
func TestUnpackStaysInRoot(t *testing.T) {
	outside := t.TempDir()
	for name, entries := range map[string][]tar.Header{
		"dotdot":        {{Name: "../../escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"through link":  {{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "d/out", Typeflag: tar.TypeSymlink, Linkname: outside}, {Name: "d/out/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"relative link": {{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "d/up", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside}, {Name: "d/up/escaped", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}},
		"hard link":     {{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "d/h", Typeflag: tar.TypeLink, Linkname: "../../../../../../../../" + filepath.Join(outside, "victim")}},
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(filepath.Join(outside, "victim"), []byte("v"), 0o644)
			dst := t.TempDir()
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range entries {
				tw.WriteHeader(&h)
				if h.Size > 0 {
					tw.Write([]byte("x"))
				}
			}
			tw.Close()
			root, err := os.OpenRoot(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			err = Unpack(&buf, root, "", false)
			if _, serr := os.Stat(filepath.Join(outside, "escaped")); serr == nil {
				t.Fatalf("a file was written outside the destination (untar error %v)", err)
			}
			if fi, serr := os.Stat(filepath.Join(dst, "d", "h")); serr == nil && os.SameFile(fi, mustStat(t, filepath.Join(outside, "victim"))) {
				t.Fatalf("a hard link to a file outside the destination was made")
			}
			if name != "dotdot" && err == nil {
				t.Errorf("untar succeeded, want it refused")
			}
			if name == "dotdot" {
				// .. is cleaned away: the file lands inside.
				if _, serr := os.Stat(filepath.Join(dst, "escaped")); serr != nil {
					t.Errorf("../../escaped not unpacked as escaped inside: %v (untar: %v)", serr, err)
				}
			}
		})
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// What Pack packs, Unpack unpacks the same, under a new top name.
func TestTarRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o750)
	os.WriteFile(filepath.Join(src, "f"), []byte("file"), 0o600)
	os.WriteFile(filepath.Join(src, "sub", "g"), []byte("nested"), 0o755)
	os.Symlink("f", filepath.Join(src, "l"))
	var buf bytes.Buffer
	if err := Pack(&buf, src, "src", false); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	root, _ := os.OpenRoot(dst)
	defer root.Close()
	if err := Unpack(&buf, root, "copy", false); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"copy/f": "file", "copy/sub/g": "nested", "copy/l": "file"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	if fi := mustStat(t, filepath.Join(dst, "copy", "sub", "g")); fi.Mode().Perm() != 0o755 {
		t.Errorf("copy/sub/g mode %v, want 0755", fi.Mode().Perm())
	}
	if l, _ := os.Readlink(filepath.Join(dst, "copy", "l")); l != "f" {
		t.Errorf("copy/l -> %q, want f", l)
	}
}

// cpDest decides where vc cp puts SRC as docker cp does: into a directory,
// as a file in a parent that exists, never creating a missing directory.
