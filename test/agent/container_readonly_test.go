package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// readonlyScript checks from inside a container the paths readonlyNodes
// makes and the spec's readonlyPaths name: each prints NAME=EROFS when a
// write to it (to its data for a file or directory, to its inode for a
// node, whose data a read-only mount does not guard) fails with EROFS.
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
// file, a directory, a file the spec's readonly paths do not name.
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

// TestReadonlyPathKinds: readonly paths naming a device node, a FIFO, a
// file, a directory and /dev/null bound in the spec are read-only in the
// container; a missing one is ignored.
func TestReadonlyPathKinds(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	readonlyNodes(t, rootfs)
	id := newID("ropaths")
	s := spec(rootfs, "sh", "-c", readonlyScript)
	s.Mounts = append(s.Mounts, &pb.Mount{Destination: "/ro-null", Source: "/dev/null", Type: "bind", Options: []string{"bind"}})
	s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, readonlyPaths...)
	e.run(id, s)
	out := e.readAll(id, "", false) + e.readAll(id, "", true)
	if st := e.wait(id, ""); st != 0 {
		t.Errorf("exit status %d: %q", st, out)
	}
	checkReadonly(t, out)
}
