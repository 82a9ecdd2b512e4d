package qemu

import (
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func TestCheckVirtioFS(t *testing.T) {
	share := hypervisor.SharedFS{Tag: "s", HostPath: "/srv/s", Kind: hypervisor.FSVirtioFS}
	for name, c := range map[string]struct {
		cfg  hypervisor.Config
		want string
		is   func(error) bool
	}{
		"read-only": {hypervisor.Config{SharedFS: []hypervisor.SharedFS{{Tag: "s", HostPath: "/srv/s", Kind: hypervisor.FSVirtioFS, ReadOnly: true}}},
			"shared fs s: a read-only virtio-fs share", errdefs.IsNotImplemented},
		"memory file": {hypervisor.Config{MemoryFile: "/f/memory", SharedFS: []hypervisor.SharedFS{share}},
			"shared fs s: virtio-fs in a VM with a memory file", errdefs.IsInvalidArgument},
		"no daemon": {hypervisor.Config{VirtiofsdPath: "/nonexistent/virtiofsd", SharedFS: []hypervisor.SharedFS{share}},
			"virtio-fs: virtiofsd /nonexistent/virtiofsd", errdefs.IsNotFound},
	} {
		if os.Geteuid() != 0 && name == "no daemon" {
			continue // refused sooner: virtio-fs needs root
		}
		err := checkVirtioFS(&c.cfg)
		if !c.is(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	// 9p shares need no daemon.
	if err := checkVirtioFS(&hypervisor.Config{VirtiofsdPath: "/nonexistent", SharedFS: []hypervisor.SharedFS{{Tag: "s", HostPath: "/srv/s"}}}); err != nil {
		t.Errorf("9p share: %v", err)
	}
	args := strings.Join(virtiofsdArgs(share, "/run/vc/x/vfs-s.sock"), " ")
	if want := "--socket-path=/run/vc/x/vfs-s.sock -o source=/srv/s -o cache=always -o timeout=1 -o announce_submounts -o sandbox=namespace"; args != want {
		t.Errorf("virtiofsd args:\n got  %s\n want %s", args, want)
	}
}
