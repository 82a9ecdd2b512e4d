package container

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Readonly paths naming a device node, a FIFO or a socket become bind
// mounts of the node on itself (on the root or below a bind mount's
// source); files, directories, symbolic links, missing and relative
// paths and paths on a filesystem the container mounts stay readonly
// paths for libcontainer.
func TestBindReadonlyNodes(t *testing.T) {
	root, vol := t.TempDir(), t.TempDir()
	for _, n := range []struct {
		path string
		mode uint32
	}{
		{filepath.Join(root, "chr"), unix.S_IFCHR | 0o666},
		{filepath.Join(root, "blk"), unix.S_IFBLK | 0o666},
		{filepath.Join(root, "fifo"), unix.S_IFIFO | 0o666},
		{filepath.Join(vol, "chr"), unix.S_IFCHR | 0o666},
	} {
		if err := unix.Mknod(n.path, n.mode, 0); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "file"), nil, 0o644)
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	os.Symlink("chr", filepath.Join(root, "link"))
	os.Mkdir(filepath.Join(root, "viaLink"), 0o755)
	unix.Mknod(filepath.Join(root, "viaLink", "chr"), unix.S_IFCHR|0o666, 0)
	os.Symlink("viaLink", filepath.Join(root, "lnk"))
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	unix.Mknod(filepath.Join(root, "dev", "chr"), unix.S_IFCHR|0o666, 0)

	s := &specs.Spec{
		Root: &specs.Root{Path: root},
		Mounts: []specs.Mount{
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind"}},
		},
		Linux: &specs.Linux{ReadonlyPaths: []string{
			"/chr", "/blk/", "/fifo", "/vol/chr", "/file", "/dir", "/link", "/lnk/chr", "/missing", "chr", "/dev/chr", "/proc/sys",
		}},
	}
	if err := bindReadonlyNodes(s); err != nil {
		t.Fatal(err)
	}
	want := []string{"/file", "/dir", "/link", "/lnk/chr", "/missing", "chr", "/dev/chr", "/proc/sys"}
	if !slices.Equal(s.Linux.ReadonlyPaths, want) {
		t.Errorf("readonly paths left %q, want %q", s.Linux.ReadonlyPaths, want)
	}
	wantMounts := map[string]string{
		"/chr": filepath.Join(root, "chr"), "/blk": filepath.Join(root, "blk"),
		"/fifo": filepath.Join(root, "fifo"), "/vol/chr": filepath.Join(vol, "chr"),
	}
	added := s.Mounts[2:]
	if len(added) != len(wantMounts) {
		t.Fatalf("mounts added %+v, want %v", added, wantMounts)
	}
	for _, m := range added {
		if wantMounts[m.Destination] != m.Source || m.Type != "bind" || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "bind") {
			t.Errorf("mount %+v, want a read-only bind of %s", m, wantMounts[m.Destination])
		}
	}
}
