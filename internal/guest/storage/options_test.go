package storage

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		in          []string
		flags, prop uintptr
		data        string
	}{
		{nil, 0, 0, ""},
		{[]string{"ro", "nosuid", "nodev", "noexec"}, unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, 0, ""},
		{[]string{"ro", "rw"}, 0, 0, ""},
		{[]string{"bind"}, unix.MS_BIND, 0, ""},
		{[]string{"rbind", "rprivate"}, unix.MS_BIND | unix.MS_REC, unix.MS_PRIVATE | unix.MS_REC, ""},
		{[]string{"shared", "slave"}, 0, unix.MS_SLAVE, ""},
		{[]string{"size=64m", "ro", "mode=1777", "", " nr_inodes=10 "}, unix.MS_RDONLY, 0, "size=64m,mode=1777,nr_inodes=10"},
		{[]string{"defaults", "noatime", "atime", "relatime"}, unix.MS_RELATIME, 0, ""},
		{[]string{"nosuid", "suid", "sync", "dirsync"}, unix.MS_SYNCHRONOUS | unix.MS_DIRSYNC, 0, ""},
		{[]string{"cache=mmap", "trans=virtio"}, 0, 0, "cache=mmap,trans=virtio"},
	} {
		got := ParseOptions(tc.in)
		if got.Flags != tc.flags || got.Propagation != tc.prop || got.Data != tc.data {
			t.Errorf("ParseOptions(%q) = {%#x %#x %q}, want {%#x %#x %q}", tc.in, got.Flags, got.Propagation, got.Data, tc.flags, tc.prop, tc.data)
		}
	}
}

func TestMergeData(t *testing.T) {
	base := []string{"trans=virtio", "version=9p2000.L", "msize=512000"}
	for extra, want := range map[string]string{
		"":                    "trans=virtio,version=9p2000.L,msize=512000",
		"msize=8192":          "trans=virtio,version=9p2000.L,msize=8192",
		"cache=mmap,posixacl": "trans=virtio,version=9p2000.L,msize=512000,cache=mmap,posixacl",
	} {
		if got := mergeData(base, extra); got != want {
			t.Errorf("mergeData(%q) = %q, want %q", extra, got, want)
		}
	}
	if base[2] != "msize=512000" {
		t.Fatal("mergeData changed its base")
	}
}
