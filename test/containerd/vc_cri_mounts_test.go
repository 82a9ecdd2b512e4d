// Host paths with mounts below them, bound into a vc pod's containers
// through CRI as critest's "Container Mount Readonly" specs do.
package containerd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
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

// vcRuncTypeHandler is the vc shim registered with CRI under runc's
// runtime type and the shim binary as runtime_path, as docs/containerd.md
// says to for recursive read-only mounts: containerd 2.3 asks only
// runtimes of type io.containerd.runc.v2 for their features.
const vcRuncTypeHandler = "vc-runc-type"

func vcRuncTypeConfig(shimDir string) string {
	return `
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'` + vcRuncTypeHandler + `']
  runtime_type = '` + containerd.RuncRuntime + `'
  runtime_path = '` + filepath.Join(shimDir, "containerd-shim-vc-v2") + `'
  sandboxer = 'podsandbox'
`
}

// TestVCCRIRecursiveReadOnly is critest's recursive read-only specs on
// the vc shim: CRI's Status lists the handler with recursive read-only
// mounts, a container with a recursively read-only volume whose host
// directory has a tmpfs below it cannot write in that tmpfs either, and
// the invalid combinations are refused.
func TestVCCRIRecursiveReadOnly(t *testing.T) {
	d := startVCDaemon(t, "", nil, vcRuncTypeConfig)
	cri := d.CRI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	st, err := cri.Runtime.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	rro := map[string]bool{}
	for _, h := range st.GetRuntimeHandlers() {
		rro[h.GetName()] = h.GetFeatures().GetRecursiveReadOnlyMounts()
	}
	if !rro[vcRuncTypeHandler] {
		t.Fatalf("CRI Status: handler %s without recursive read-only mounts (handlers: %v)", vcRuncTypeHandler, rro)
	}
	t.Logf("recursive read-only mounts by handler: %v", rro)

	pcfg, podID, _ := runPod(t, d.Containerd, cri, vcRuncTypeHandler, "vc-rro", "sleep", "1000")
	dir, clear := hostPathWithTmpfs(t)
	create := func(m *runtimeapi.Mount) (string, error) {
		cfg := containerd.ContainerConfig("rro-"+strconv.Itoa(int(m.Propagation))+"-"+strconv.FormatBool(m.Readonly), images.BusyboxRef, "sleep", "1000")
		cfg.Mounts = []*runtimeapi.Mount{m}
		r, err := cri.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pcfg})
		return r.GetContainerId(), err
	}
	for _, bad := range []*runtimeapi.Mount{
		{HostPath: dir, ContainerPath: "/mnt", Readonly: false, RecursiveReadOnly: true},
		{HostPath: dir, ContainerPath: "/mnt", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
		{HostPath: dir, ContainerPath: "/mnt", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL},
	} {
		if _, err := create(bad); err == nil {
			t.Errorf("CreateContainer with %v: accepted", bad)
		}
	}
	id, err := create(&runtimeapi.Mount{HostPath: dir, ContainerPath: "/mnt", Readonly: true, RecursiveReadOnly: true})
	if err != nil {
		t.Fatalf("CreateContainer with a recursive read-only mount: %v", err)
	}
	if _, err := cri.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	for _, f := range []string{"/mnt/tmpfs/foo", "/mnt/foo"} {
		if r := execSync(t, cri, id, "sh", "-c", "touch "+f+" 2>&1"); r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "Read-only file system") {
			t.Errorf("touch %s in a recursively read-only volume: exit %d: %s", f, r.ExitCode, r.Stdout)
		}
	}
	if r := execSync(t, cri, id, "ls", "/mnt/tmpfs"); r.ExitCode != 0 {
		t.Errorf("ls /mnt/tmpfs: exit %d: %s", r.ExitCode, r.Stderr)
	}
	// critest clears the host path while the container runs.
	if err := clear(); err != nil {
		t.Errorf("clearing a host path bound into a running container: %v", err)
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
}
