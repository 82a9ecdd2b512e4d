package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// In a real VM, a volume made read-only with OCI's "ro" keeps its
// writable submounts writable, and one made "rro" does not; the
// container's loopback is up.
func TestVolumeSubmounts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vol := t.TempDir()
	sub := filepath.Join(vol, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })

	s := newSandbox(ctx, t, "e2e-submounts", "")
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	script := `for p in /ro /ro/sub /rro /rro/sub; do touch $p/probe 2>/dev/null && echo "$p=rw" || echo "$p=ro"; done; echo lo=$(cat /sys/class/net/lo/operstate)`
	spec := oci.DefaultSpec([]string{"sh", "-c", script}, nil, "/", false)
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/ro", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/rro", Type: "bind", Source: vol, Options: []string{"rbind", "rro"}})
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	streams := s.Container("c").IOStream(ctx, "c", vc.IO{Stdout: &out, Stderr: &out})
	if err := s.Container("c").Start(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := s.Container("c").Wait(ctx); err != nil || code != 0 {
		t.Fatalf("wait: %d %v", code, err)
	}
	<-streams
	got := strings.Fields(out.String())
	want := []string{"/ro=ro", "/ro/sub=rw", "/rro=ro", "/rro/sub=ro", "lo=unknown"} // an up loopback's operstate is "unknown"
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("in the guest: %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(sub, "probe")); err != nil {
		t.Errorf("the write to the ro volume's submount did not reach the host: %v", err)
	}
	if err := s.Container("c").Delete(ctx); err != nil {
		t.Fatal(err)
	}
}
