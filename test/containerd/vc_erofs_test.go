package containerd_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// TestVCErofsSnapshotter runs a container whose image is unpacked by
// containerd's erofs snapshotter: its rootfs comes as erofs layers and a
// format/mkdir/overlay mount with {{ mount N }} templates. The vc runtime
// says in its Info that it activates those (runtime-allow-mounts), so
// containerd passes them to the shim as they are, and the shim mounts them
// (prepareRootfs). The container runs and writes to its rootfs; once it is
// removed, nothing the shim mounted is left.
func TestVCErofsSnapshotter(t *testing.T) {
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		testenv.Skip(t, "needs mkfs.erofs (erofs-utils, hack/install-deps.sh): containerd's erofs snapshotter converts layers with it")
	}
	d := startVCWith(t, "", []string{"io.containerd.snapshotter.v1.erofs"})
	const id = "vc-erofs"
	d.Ctr(t, "run", "-d", "--snapshotter", "erofs", "--runtime", containerd.VCRuntime, images.BusyboxRef, id,
		"sh", "-c", "echo written > /tmp/f && sleep 600")

	// The shim mounted the layers in the bundle (<bundle>/vc-mounts/N),
	// not containerd's mount manager.
	var shimMounts []string
	infos, err := mountinfo.Read(mountinfo.Self)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range infos {
		if strings.Contains(m.MountPoint, "/"+id+"/vc-mounts/") {
			shimMounts = append(shimMounts, m.FSType+" "+m.MountPoint)
		}
	}
	t.Logf("mounted by the shim: %v", shimMounts)
	if !strings.Contains(strings.Join(shimMounts, "\n"), "erofs ") {
		t.Errorf("no erofs layer mounted by the shim in the bundle; its mounts: %v", shimMounts)
	}

	deadline := time.Now().Add(time.Minute)
	for {
		out, err := d.CtrErr(t.Context(), "task", "exec", "--exec-id", "cat", id, "cat", "/tmp/f")
		if err == nil && strings.TrimSpace(out) == "written" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cat /tmp/f in the container: %q, %v", out, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	d.Ctr(t, "task", "kill", "-s", "SIGKILL", id)
	for {
		out, _ := d.CtrErr(t.Context(), "task", "ls")
		if !strings.Contains(out, id) || strings.Contains(out, "STOPPED") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task did not stop: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.Ctr(t, "task", "rm", id)
	d.Ctr(t, "container", "rm", id)
	infos, _ = mountinfo.Read(mountinfo.Self)
	for _, m := range infos {
		if strings.Contains(m.MountPoint, "/"+id+"/") {
			t.Errorf("left mounted after the container's removal: %s (%s)", m.MountPoint, m.FSType)
		}
	}
}
