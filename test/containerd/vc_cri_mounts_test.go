// Host paths with mounts below them, bound into a vc pod's containers
// through CRI as critest's "Container Mount Readonly" specs do.
package containerd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// hostPathWithTmpfs is critest's createHostPathForRROMount: a host
// directory with a tmpfs mounted on its "tmpfs" directory. The returned
// function clears it as critest does (detach the tmpfs, remove the
// directory) and reports what failed.
func hostPathWithTmpfs(t *testing.T) (string, func() error) {
	t.Helper()
	dir, err := os.MkdirTemp("", "vc-cri-rro-")
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", sub, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	cleared := false
	clear := func() error {
		if cleared {
			return nil
		}
		if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
			return err
		}
		cleared = true
		return os.RemoveAll(dir)
	}
	t.Cleanup(func() {
		if err := clear(); err != nil {
			unix.Unmount(sub, unix.MNT_DETACH)
		}
	})
	return dir, clear
}

// mountsOf lists the host's mounts whose mount point or root is below
// one of dirs, or that are the tmpfs of a host path (their root names
// nothing there, so they are matched by mount point only).
func mountsOf(t *testing.T, dirs ...string) []string {
	t.Helper()
	infos, err := mountinfo.Read("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mi := range infos {
		for _, d := range dirs {
			if mi.MountPoint == d || strings.HasPrefix(mi.MountPoint, d+"/") {
				out = append(out, mi.MountPoint+" ("+mi.FSType+" "+mi.Root+")")
				break
			}
		}
	}
	return out
}

// TestVCCRIReadonlyMountOfMountPoint is critest's "should support
// non-recursive readonly mounts" on the vc handler: a host directory with
// a tmpfs below it, bound read-only but not recursively. In the container
// the tmpfs stays writable (as runc keeps it); critest then, with the
// container still running, detaches its tmpfs and removes the directory:
// that must not fail with EBUSY because of a mount the shim made on the
// host. A second such directory is cleared only after the container and
// the pod are gone, and no mount the shim made for either is left.
func TestVCCRIReadonlyMountOfMountPoint(t *testing.T) {
	d := startVC(t, "")
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	pcfg, podID, _ := runPod(t, d.Containerd, cri, containerd.VCHandler, "vc-ro-mounts", "sleep", "1000")
	whileRunning, clearWhileRunning := hostPathWithTmpfs(t)
	afterPod, clearAfterPod := hostPathWithTmpfs(t)

	cfg := containerd.ContainerConfig("ro-mounts", images.BusyboxRef, "sleep", "1000")
	cfg.Mounts = []*runtimeapi.Mount{
		{HostPath: whileRunning, ContainerPath: "/mnt", Readonly: true},
		{HostPath: afterPod, ContainerPath: "/mnt2", Readonly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_PRIVATE},
	}
	cr, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pcfg})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	id := cr.ContainerId
	if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	for _, mnt := range []string{"/mnt", "/mnt2"} {
		if r := execSync(t, cri, id, "touch", mnt+"/tmpfs/file"); r.ExitCode != 0 {
			t.Errorf("touch %s/tmpfs/file (a writable submount of a non-recursively read-only volume): exit %d: %s", mnt, r.ExitCode, r.Stderr)
		}
		if r := execSync(t, cri, id, "touch", mnt+"/file"); r.ExitCode == 0 {
			t.Errorf("touch %s/file succeeded in a read-only volume", mnt)
		}
	}

	// critest's order: the host path goes while the container runs.
	if err := clearWhileRunning(); err != nil {
		t.Errorf("clearing a host path bound into a running container: %v", err)
		if m := mountsOf(t, d.stateRoot); len(m) > 0 {
			t.Logf("mounts under the state root: %q", m)
		}
	}

	if _, err := cri.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
		t.Fatalf("StopContainer: %v", err)
	}
	if _, err := cri.Runtime.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("RemoveContainer: %v", err)
	}
	// The container is gone: none of its mounts may be (its volumes are
	// bound under the sandbox's shared directory, below the state root).
	if m := mountsOf(t, d.stateRoot, afterPod); len(m) > 2 {
		// The pod's own container and the test's tmpfs stay.
		t.Logf("mounts after RemoveContainer: %q", m)
	}
	for _, m := range mountsOf(t, d.stateRoot) {
		if strings.Contains(m, "/"+id+"/") {
			t.Errorf("after RemoveContainer, a mount of the container is left: %s", m)
		}
	}
	if _, err := cri.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := cri.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	d.waitNoShims(t)
	if m := mountsOf(t, d.stateRoot); len(m) > 0 {
		t.Errorf("after RemovePodSandbox, mounts left under the state root: %q", m)
	}
	if err := clearAfterPod(); err != nil {
		t.Errorf("clearing a host path after its pod is gone: %v", err)
	}
	if _, err := os.Stat(afterPod); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host path %s still there: %v", afterPod, err)
	}
}
