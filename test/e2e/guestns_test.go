package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// runSpec runs a container of spec with root in s and returns its output
// and exit status; it is deleted afterwards.
func runSpec(ctx context.Context, t *testing.T, s *vc.Sandbox, root, cid string, spec *specs.Spec) (string, int32) {
	t.Helper()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create %s: %v", cid, err)
	}
	defer func() {
		if err := s.Container(cid).Delete(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("delete %s: %v", cid, err)
		}
	}()
	var out syncBuffer
	streams := s.Container(cid).IOStream(ctx, cid, vc.IO{Stdout: &out, Stderr: &out})
	if err := s.Container(cid).Start(ctx); err != nil {
		t.Fatalf("start %s: %v", cid, err)
	}
	code, err := s.Container(cid).Wait(ctx)
	if err != nil {
		t.Fatalf("wait %s: %v", cid, err)
	}
	<-streams
	return out.String(), code
}

// TestGuestNamespaces: in a VM (the guest runs cgroup v2, root
// filesystems come from the host over 9p), a container sees its own
// cgroup and limits at /sys/fs/cgroup, readonly paths of every kind are
// read-only, and a container with a user namespace runs as its mapped
// ids.
func TestGuestNamespaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	busybox, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	s := newSandbox(ctx, t, "e2e-guestns", "")

	// The limit is at the root of the container's cgroup2 mount, and its
	// cgroup is "/": with the cgroup namespace DefaultSpec asks for, and
	// with the one the agent gives a spec that has none (containerd's,
	// docker's and podman's on a cgroup v1 host, as the host here).
	t.Run("cgroupns", func(t *testing.T) {
		for _, withNS := range []bool{true, false} {
			spec := oci.DefaultSpec([]string{"sh", "-c", "cat /sys/fs/cgroup/memory.max /proc/self/cgroup"}, nil, "/", false)
			limit := int64(64 << 20)
			spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
			if !withNS {
				spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
					return ns.Type == specs.CgroupNamespace
				})
			}
			out, code := runSpec(ctx, t, s, busybox, "cgns", spec)
			if code != 0 || out != "67108864\n0::/\n" {
				t.Errorf("cgroup namespace in the spec %v: exit %d, output %q, want the limit 67108864 and 0::/", withNS, code, out)
			}
		}
	})

	// Nodes as the runtime-tools validation makes them (0:0, which QEMU
	// cannot open to answer a statfs), a file, a directory, the host's
	// /dev/null bound in, a missing path.
	t.Run("readonly-paths", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "rootfs")
		if err := rootfs.BuildBusybox(root); err != nil {
			t.Fatal(err)
		}
		readonlyNodes(t, root)
		spec := oci.DefaultSpec([]string{"sh", "-c", readonlyScript}, nil, "/", false)
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/ro-null", Source: "/dev/null", Type: "bind", Options: []string{"bind"}})
		spec.Linux.ReadonlyPaths = append(spec.Linux.ReadonlyPaths, readonlyPaths...)
		out, code := runSpec(ctx, t, s, root, "ropaths", spec)
		if code != 0 {
			t.Errorf("exit status %d: %q", code, out)
		}
		checkReadonly(t, out)
	})

	// Root inside, the mapped ids in the VM: a file the container's root
	// makes in its root filesystem reaches the host (9p keeps the guest's
	// owners) owned by them. Its root is below the host's 0700 share, as
	// every container's.
	t.Run("userns", func(t *testing.T) {
		root := filepath.Join(t.TempDir(), "rootfs")
		if err := rootfs.BuildBusybox(root); err != nil {
			t.Fatal(err)
		}
		spec := oci.DefaultSpec([]string{"sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/by-root; ls /sys/kernel >/dev/null && echo sys-ok; cat /proc/self/cgroup"}, nil, "/", false)
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
		out, code := runSpec(ctx, t, s, root, "userns", spec)
		if code != 0 {
			t.Errorf("exit status %d: %q", code, out)
		}
		// /sys is the guest's, bound (a user namespace cannot mount sysfs
		// in the VM's network namespace); the cgroup namespace is there.
		for _, w := range []string{"uid=0(root) gid=0(root)", "0     100000      65536", "0     200000      65536", "sys-ok\n", "0::/\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("output %q lacks %q", out, w)
			}
		}
		fi, err := os.Stat(filepath.Join(root, "tmp", "by-root"))
		if err != nil {
			t.Fatalf("the container's file: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 100000 || st.Gid != 200000 {
			t.Errorf("a file the container's root made is owned by %d:%d, want the mapped 100000:200000", st.Uid, st.Gid)
		}
	})
}

// readonlyScript checks from inside a container the paths readonlyNodes
// makes and readonlyPaths names: each prints NAME=EROFS when a write to
// it (to its data for a file or directory, to its inode for a node,
// whose data a read-only mount does not guard) fails with EROFS.
const readonlyScript = `
t() { if "$@" 2>&1 | grep -q 'Read-only file system'; then echo "$n=EROFS"; else echo "$n=writable"; fi; }
n=file t sh -c 'echo x > /ro-file'
n=dir t touch /ro-dir/new
n=chr t touch /ro-chr
n=blk t chmod 600 /ro-blk
n=fifo t touch /ro-fifo
n=null t touch /ro-null
n=other t touch /rw-file
echo null-works=$(echo x > /ro-null && echo yes)
`

// readonlyNodes makes in root the files readonlyScript uses: nodes like
// those of the runtime-tools linux_readonly_paths validation (0:0), a
// file, a directory, a file readonlyPaths does not name, a mount point.
func readonlyNodes(t *testing.T, root string) {
	t.Helper()
	for _, n := range []struct {
		name string
		mode uint32
	}{{"ro-chr", unix.S_IFCHR | 0o666}, {"ro-blk", unix.S_IFBLK | 0o666}, {"ro-fifo", unix.S_IFIFO | 0o666}} {
		if err := unix.Mknod(filepath.Join(root, n.name), n.mode, 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ro-file", "rw-file", "ro-null"} {
		if err := os.WriteFile(filepath.Join(root, f), []byte("x\n"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "ro-dir"), 0o777); err != nil {
		t.Fatal(err)
	}
}

// readonlyPaths are what readonlyScript expects read-only, and a path
// that does not exist (ignored, as runc does).
var readonlyPaths = []string{"/ro-file", "/ro-dir", "/ro-chr", "/ro-blk", "/ro-fifo", "/ro-null", "/missing/path"}

// checkReadonly checks readonlyScript's output.
func checkReadonly(t *testing.T, out string) {
	t.Helper()
	for _, w := range []string{"file=EROFS", "dir=EROFS", "chr=EROFS", "blk=EROFS", "fifo=EROFS", "null=EROFS", "other=writable", "null-works=yes"} {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("output %q lacks %q", out, w)
		}
	}
}
