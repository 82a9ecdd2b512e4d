package guestimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pierrec/lz4/v4"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
)

type cpioEntry struct {
	name         string
	mode         uint32
	major, minor uint32
	data         []byte
}

// readCpio parses a newc archive strictly (magic, alignment, trailer).
func readCpio(r io.Reader) ([]cpioEntry, error) {
	br := bufio.NewReader(r)
	var off int64
	read := func(n int64) ([]byte, error) {
		b := make([]byte, n)
		_, err := io.ReadFull(br, b)
		off += n
		return b, err
	}
	skipPad := func() error {
		if r := off % 4; r != 0 {
			pad, err := read(4 - r)
			if err != nil {
				return err
			}
			if !bytes.Equal(pad, make([]byte, len(pad))) {
				return fmt.Errorf("non-zero padding at %d", off)
			}
		}
		return nil
	}
	var ents []cpioEntry
	for {
		hdr, err := read(110)
		if err != nil {
			return nil, fmt.Errorf("header at %d: %w", off-110, err)
		}
		if string(hdr[:6]) != "070701" {
			return nil, fmt.Errorf("bad magic %q at %d", hdr[:6], off-110)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				panic(err)
			}
			return uint32(v)
		}
		mode, size, major, minor, namesize := field(1), field(6), field(9), field(10), field(11)
		name, err := read(int64(namesize))
		if err != nil {
			return nil, err
		}
		if name[len(name)-1] != 0 {
			return nil, fmt.Errorf("name %q not NUL-terminated", name)
		}
		if err := skipPad(); err != nil {
			return nil, err
		}
		data, err := read(int64(size))
		if err != nil {
			return nil, err
		}
		if err := skipPad(); err != nil {
			return nil, err
		}
		e := cpioEntry{name: string(name[:len(name)-1]), mode: mode, major: major, minor: minor, data: data}
		if e.name == "TRAILER!!!" {
			if _, err := br.ReadByte(); err != io.EOF {
				return nil, fmt.Errorf("data after the trailer")
			}
			return ents, nil
		}
		ents = append(ents, e)
	}
}

func cpioMap(t *testing.T, ents []cpioEntry) map[string]cpioEntry {
	t.Helper()
	m := map[string]cpioEntry{}
	for _, e := range ents {
		if _, dup := m[e.name]; dup {
			t.Errorf("entry %s twice in the archive", e.name)
		}
		if d := filepath.Dir(e.name); d != "." {
			if p, ok := m[d]; !ok || p.mode&0o170000 != cpioDir {
				t.Errorf("%s comes before its directory %s", e.name, d)
			}
		}
		m[e.name] = e
	}
	return m
}

func TestCpioWriter(t *testing.T) {
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Dir("tmp", 0o1777))
	must(w.CharDevice("/dev/console", 0o600, 5, 1))
	must(w.File("init", 0o755, 5, strings.NewReader("hello")))
	must(w.File("a/b/c/empty", 0o644, 0, strings.NewReader("")))
	must(w.Symlink("bin/sh", "busybox"))
	must(w.Close())
	if err := w.Dir("tmp", 0o755); err == nil {
		t.Error("writing a directory twice succeeded")
	}
	if err := newCpioWriter(io.Discard).File("short", 0o644, 10, strings.NewReader("abc")); err == nil {
		t.Error("a file shorter than its size was accepted")
	}

	ents, err := readCpio(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	m := cpioMap(t, ents)
	for name, want := range map[string]uint32{
		"tmp": cpioDir | 0o1777, "dev": cpioDir | 0o755, "dev/console": cpioChar | 0o600,
		"init": cpioRegular | 0o755, "a/b/c": cpioDir | 0o755, "a/b/c/empty": cpioRegular | 0o644,
		"bin/sh": cpioSymlink | 0o777,
	} {
		if e, ok := m[name]; !ok || e.mode != want {
			t.Errorf("%s: mode %o, want %o (present %v)", name, e.mode, want, ok)
		}
	}
	if e := m["dev/console"]; e.major != 5 || e.minor != 1 {
		t.Errorf("dev/console is %d,%d, want 5,1", e.major, e.minor)
	}
	if string(m["init"].data) != "hello" || string(m["bin/sh"].data) != "busybox" {
		t.Errorf("init %q, bin/sh -> %q", m["init"].data, m["bin/sh"].data)
	}

	// GNU cpio must agree.
	if _, err := exec.LookPath("cpio"); err != nil {
		testenv.Skipf(t, "GNU cpio not installed to cross-check the archive: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil && os.Geteuid() == 0 {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "init")); err != nil || string(b) != "hello" {
		t.Errorf("cpio extracted init %q, %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("cpio extracted bin/sh -> %q, %v", l, err)
	}
	if os.Geteuid() == 0 {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "dev/console"), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 1 {
			t.Errorf("cpio extracted dev/console as mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
	}
}

// readInitrd decompresses and parses an initrd built here.
func readInitrd(t *testing.T, img *Image) map[string]cpioEntry {
	t.Helper()
	f, err := os.Open(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch img.Compression {
	case CompressGzip:
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case CompressLZ4:
		r = lz4.NewReader(f)
	case CompressNone:
	default:
		cmd := exec.Command(string(img.Compression), "-d", "-c")
		cmd.Stdin = f
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s -d: %v", img.Compression, err)
		}
		r = bytes.NewReader(out)
	}
	ents, err := readCpio(r)
	if err != nil {
		t.Fatalf("initrd %s: %v", img.Initrd, err)
	}
	return cpioMap(t, ents)
}
