package boot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRootFSTypeFrom(t *testing.T) {
	initramfs := "1 1 0:2 / / rw - rootfs rootfs rw,size=247788k,nr_inodes=61947\n"
	switched := initramfs + "20 1 0:20 / / rw,relatime - tmpfs tmpfs rw,mode=755\n21 20 0:21 / /proc rw shared:2 - proc proc rw\n"
	host := "25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n26 25 0:5 / /dev rw - devtmpfs udev rw\n"
	for in, want := range map[string]string{initramfs: "rootfs", switched: "tmpfs", host: "ext4"} {
		got, err := rootFSTypeFrom(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("rootFSTypeFrom(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := rootFSTypeFrom(strings.NewReader("26 25 0:5 / /dev rw - devtmpfs udev rw\n")); err == nil {
		t.Error("no error for a mountinfo without /")
	}
}

// TestMoveEntry moves a tree the way SwitchRoot empties the initramfs:
// modes (set-id bits too), symlinks and device nodes survive, the source
// is gone.
func TestMoveEntry(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes device nodes and chowns")
	}
	src := filepath.Join(t.TempDir(), "src")
	dst := filepath.Join(t.TempDir(), "dst")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "etc/vc-agent"), 0o755))
	must(os.Mkdir(filepath.Join(src, "tmp"), 0o755))
	must(unix.Chmod(filepath.Join(src, "tmp"), 0o1777))
	must(os.WriteFile(filepath.Join(src, "init"), []byte("agent"), 0o755))
	must(unix.Chmod(filepath.Join(src, "init"), 0o4755))
	must(os.WriteFile(filepath.Join(src, "etc/vc-agent/modules"), []byte("a.ko\n"), 0o644))
	must(os.Symlink("../init", filepath.Join(src, "etc/link")))
	must(os.Mkdir(filepath.Join(src, "dev"), 0o755))
	must(unix.Mknod(filepath.Join(src, "dev/console"), unix.S_IFCHR|0o600, int(unix.Mkdev(5, 1))))
	must(os.Lchown(filepath.Join(src, "etc/vc-agent/modules"), 12, 34))

	var st unix.Stat_t
	must(unix.Lstat(src, &st))
	must(moveEntry(src, dst, st.Dev))

	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Errorf("source still there: %v", err)
	}
	check := func(name string, mode uint32) *unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dst, name), &st); err != nil {
			t.Error(err)
			return &st
		}
		if st.Mode != mode {
			t.Errorf("%s: mode %o, want %o", name, st.Mode, mode)
		}
		return &st
	}
	check("tmp", unix.S_IFDIR|0o1777)
	check("init", unix.S_IFREG|0o4755)
	if st := check("etc/vc-agent/modules", unix.S_IFREG|0o644); st.Uid != 12 || st.Gid != 34 {
		t.Errorf("modules owned by %d:%d, want 12:34", st.Uid, st.Gid)
	}
	if st := check("dev/console", unix.S_IFCHR|0o600); unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 1 {
		t.Errorf("dev/console is %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if l, err := os.Readlink(filepath.Join(dst, "etc/link")); err != nil || l != "../init" {
		t.Errorf("etc/link -> %q, %v", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "init")); err != nil || string(b) != "agent" {
		t.Errorf("init holds %q, %v", b, err)
	}
}
