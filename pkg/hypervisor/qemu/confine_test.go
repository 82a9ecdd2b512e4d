package qemu

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func TestPlanConfinement(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("as a user other than root, QEMU runs as its caller: nothing to plan (needs root)")
	}
	cfg := &hypervisor.Config{StateDir: "/run/vc/s/vm", Kernel: "/k/vmlinuz", Initrd: "/k/initrd",
		SharedFS: []hypervisor.SharedFS{{Tag: "t", HostPath: "/run/vc/s/shared/"}},
		Disks:    []hypervisor.Disk{{ID: "d", Path: "/dev/loop7", ReadOnly: true}}}

	t.Run("root", func(t *testing.T) {
		c := *cfg
		c.User = hypervisor.UserRoot
		if conf, err := planConfinement(&c, "/usr/bin/qemu-system-x86_64"); conf != nil || err != nil {
			t.Fatalf("user root: %+v, %v; want no confinement", conf, err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		c := *cfg
		c.User = "vc-no-such-user"
		_, err := planConfinement(&c, "")
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), `"vc-no-such-user"`) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("root by another name", func(t *testing.T) {
		c := *cfg
		c.User = "daemon" // uid 1 on Debian: unprivileged, works
		if _, err := planConfinement(&c, ""); err != nil {
			t.Fatalf("daemon: %v", err)
		}
	})
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
	conf, err := planConfinement(cfg, "/opt/qemu/bin/qemu")
	if err != nil {
		t.Fatalf("the install step makes %s: %v", DefaultUser, err)
	}
	if conf.uid == 0 || conf.user != DefaultUser {
		t.Errorf("user %s uid %d", conf.user, conf.uid)
	}
	if !slices.Equal(conf.caps, shareCaps) {
		t.Errorf("caps %v with a share, want %v", conf.caps, shareCaps)
	}
	want := []confineBind{{"/run/vc/s/vm", true}, {"/run/vc/s/shared", true}, {"/opt/qemu/bin/qemu", false},
		{"/k/vmlinuz", false}, {"/k/initrd", false}, {"/dev/loop7", false}}
	if !slices.Equal(conf.binds, want) {
		t.Errorf("binds %v, want %v", conf.binds, want)
	}
	if !slices.Equal(conf.shares, []string{"/run/vc/s/shared"}) {
		t.Errorf("shares %v", conf.shares)
	}
	noShare := *cfg
	noShare.SharedFS = nil
	if conf, err := planConfinement(&noShare, ""); err != nil || len(conf.caps) != 0 {
		t.Errorf("without shares: caps %v (%v), want none", conf.caps, err)
	}
	// A virtio-fs share is virtiofsd's: QEMU gets neither capabilities
	// nor the directory (its socket is in the state directory).
	vfs := *cfg
	vfs.SharedFS = []hypervisor.SharedFS{{Tag: "t", HostPath: "/run/vc/s/shared", Kind: hypervisor.FSVirtioFS}}
	conf, err = planConfinement(&vfs, "")
	if err != nil || len(conf.caps) != 0 || len(conf.shares) != 0 || slices.ContainsFunc(conf.binds, func(b confineBind) bool { return b.path == "/run/vc/s/shared" }) {
		t.Errorf("virtio-fs only: caps %v, shares %v, binds %v (%v); want no capability and no share", conf.caps, conf.shares, conf.binds, err)
	}
}

func TestWithin(t *testing.T) {
	for _, c := range []struct {
		p, dir string
		want   bool
	}{{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/a/b", "/a/", true}, {"/b", "/a", false}} {
		if got := within(c.p, c.dir); got != c.want {
			t.Errorf("within(%q, %q) = %v", c.p, c.dir, got)
		}
	}
}

// goThrowaway's goroutines never run on the main thread (which Go would
// keep, in whatever namespace they left it), nor on one another's.
func TestGoThrowawayNotMainThread(t *testing.T) {
	const n = 200
	tids := make(chan int, n)
	for i := 0; i < n; i++ {
		goThrowaway(func() { tids <- unix.Gettid() })
	}
	for i := 0; i < n; i++ {
		if tid := <-tids; tid == unix.Getpid() {
			t.Fatalf("a throwaway goroutine ran on the main thread (%d)", tid)
		}
	}
}
