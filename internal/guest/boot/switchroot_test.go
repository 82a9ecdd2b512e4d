package boot

import (
	"strings"
	"testing"
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

func TestRootHasParentFrom(t *testing.T) {
	initramfs := "1 1 0:2 / / rw - rootfs rootfs rw\n"
	bound := "30 1 0:2 / / rw - rootfs rootfs rw\n31 30 0:21 / /proc rw - proc proc rw\n"
	host := "25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
	for in, want := range map[string]bool{initramfs: false, bound: true, host: true} {
		if got := rootHasParentFrom(strings.NewReader(in)); got != want {
			t.Errorf("rootHasParentFrom(%q) = %v, want %v", in, got, want)
		}
	}
}
