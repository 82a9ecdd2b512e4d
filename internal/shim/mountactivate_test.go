package shim

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/internal/testenv"
)

func TestFormatMount(t *testing.T) {
	var active []activeMount
	for i := range 3 {
		active = append(active, activeMount{
			Mount:      mount.Mount{Type: "erofs", Source: fmt.Sprintf("/img/%d", i)},
			MountPoint: fmt.Sprintf("/a/%d", i),
		})
	}
	m, err := formatMount(mount.Mount{
		Type:   "overlay",
		Source: "overlay",
		Options: []string{
			"workdir={{ mount 0 }}/work", "upperdir={{ mount 0 }}/upper",
			"lowerdir={{ mount 2 }}:{{ mount 1 }}", "index=off",
		},
	}, active)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"workdir=/a/0/work", "upperdir=/a/0/upper", "lowerdir=/a/2:/a/1", "index=off"}
	if strings.Join(m.Options, ",") != strings.Join(want, ",") {
		t.Errorf("options %v, want %v", m.Options, want)
	}
	m, err = formatMount(mount.Mount{Options: []string{"lowerdir={{ overlay 2 1 }}", "x={{ overlay 0 1 }}"}}, active)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Options, ","); got != "lowerdir=/a/2:/a/1,x=/a/0:/a/1" {
		t.Errorf("overlay ranges: %s", got)
	}
	m, err = formatMount(mount.Mount{Source: "{{ source 1 }}", Options: []string{"x={{ target 0 }}"}}, active)
	if err != nil || m.Source != "/img/1" || m.Options[0] != "x=" {
		t.Errorf("source/target templates: %+v, %v", m, err)
	}
	for _, bad := range []string{"{{ mount 3 }}", "{{ mount -1 }}", "{{ overlay 0 5 }}", "{{ nosuch 1 }}", "{{ mount"} {
		if _, err := formatMount(mount.Mount{Source: bad}, active); err == nil {
			t.Errorf("template %q: no error", bad)
		}
	}
}

func TestMkdirMount(t *testing.T) {
	dir := t.TempDir()
	m, err := mkdirMount(mount.Mount{Options: []string{
		"X-containerd.mkdir.path=" + dir + "/0:0755",
		"X-containerd.mkdir.path=" + dir + "/0/upper:0750",
		"lowerdir=/x",
	}}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.Options, ",") != "lowerdir=/x" {
		t.Errorf("mkdir options left: %v", m.Options)
	}
	st, err := os.Stat(filepath.Join(dir, "0/upper"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o750 {
		t.Errorf("mode %v, want 0750", st.Mode().Perm())
	}
	for _, bad := range []string{
		"X-containerd.mkdir.path=/etc/evil:0755", // outside what was activated
		"X-containerd.mkdir.path=" + dir + "/../evil",
		"X-containerd.mkdir.path=" + dir,
		"X-containerd.mkdir.path=" + dir + "/1:999",
		"X-containerd.mkdir.nopath=" + dir + "/1",
		"X-containerd.mkdir.path=" + dir + "/1:0755:x:0",
	} {
		if _, err := mkdirMount(mount.Mount{Options: []string{bad}}, dir); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", bad, err)
		}
	}
	if _, err := os.Stat("/etc/evil"); err == nil {
		t.Error("mkdir made /etc/evil")
	}
	if _, _, err := splitTransforms("mkfs/ext4"); !errdefs.IsNotImplemented(err) {
		t.Errorf("mkfs transform: %v, want not implemented", err)
	}
}

// TestPrepareRootfsMountManagerFormat mounts a rootfs as containerd's
// erofs snapshotter describes it to a runtime that handles format/*: a
// writable ext4 image, read-only layers, and a format/mkdir/overlay whose
// upper and work directories are made inside the ext4 (here the layers
// are bind mounts: the shape is the same). Then it unmounts it all.
func TestPrepareRootfsMountManagerFormat(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: loop devices and mounts")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		testenv.Skip(t, "needs mkfs.ext4 (e2fsprogs) for the scratch image")
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "scratch.ext4")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 16<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	lower1, lower2 := filepath.Join(tmp, "l1"), filepath.Join(tmp, "l2")
	for d, files := range map[string][]string{lower1: {"a", "shared"}, lower2: {"b", "shared"}} {
		os.MkdirAll(d, 0o755)
		for _, f := range files {
			os.WriteFile(filepath.Join(d, f), []byte(filepath.Base(d)+"\n"), 0o644)
		}
	}
	bundle := filepath.Join(tmp, "bundle")
	os.MkdirAll(bundle, 0o700)
	r := &taskAPI.CreateTaskRequest{ID: "c", Bundle: bundle, Rootfs: []*types.Mount{
		{Type: "ext4", Source: img, Options: []string{"rw", "loop"}},
		{Type: "bind", Source: lower1, Options: []string{"rbind", "ro"}},
		{Type: "bind", Source: lower2, Options: []string{"rbind", "ro"}},
		{Type: "format/mkdir/overlay", Source: "overlay", Options: []string{
			"X-containerd.mkdir.path={{ mount 0 }}/upper:0755",
			"X-containerd.mkdir.path={{ mount 0 }}/work:0755",
			"workdir={{ mount 0 }}/work", "upperdir={{ mount 0 }}/upper",
			"lowerdir={{ mount 2 }}:{{ mount 1 }}",
		}},
	}}
	target, mounted, err := prepareRootfs(r, &specs.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmountRootfs(target) })
	if !mounted || target != filepath.Join(bundle, "rootfs") {
		t.Fatalf("prepareRootfs = %s, %v", target, mounted)
	}
	for f, want := range map[string]string{"a": "l1\n", "b": "l2\n", "shared": "l2\n"} {
		if b, err := os.ReadFile(filepath.Join(target, f)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", f, b, err, want)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "new"), []byte("x"), 0o644); err != nil {
		t.Fatalf("rootfs not writable: %v", err)
	}
	// The write landed in the ext4's upper directory.
	if _, err := os.Stat(filepath.Join(bundle, activationDirName, "0", "upper", "new")); err != nil {
		t.Errorf("write not in the scratch image's upper dir: %v", err)
	}
	infos, err := mountinfo.Read(mountinfo.Self)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mountinfo.Lookup(infos, target); !ok || m.FSType != "overlay" {
		t.Errorf("rootfs mount %+v, want overlay", m)
	}

	if err := unmountRootfs(target); err != nil {
		t.Fatal(err)
	}
	infos, _ = mountinfo.Read(mountinfo.Self)
	for _, m := range infos {
		if strings.HasPrefix(m.MountPoint, bundle+"/") {
			t.Errorf("left mounted: %s (%s)", m.MountPoint, m.FSType)
		}
	}
	if _, err := os.Stat(filepath.Join(bundle, activationDirName)); !os.IsNotExist(err) {
		t.Errorf("activation directory left: %v", err)
	}
	if out, _ := exec.Command("losetup", "-j", img).Output(); len(out) != 0 {
		t.Errorf("loop device left: %s", out)
	}
}

// TestPrepareRootfsActivationUndone: a template naming a mount that does
// not exist fails the create with nothing left mounted.
func TestPrepareRootfsActivationUndone(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: mounts")
	}
	tmp := t.TempDir()
	lower := filepath.Join(tmp, "l")
	os.MkdirAll(lower, 0o755)
	bundle := filepath.Join(tmp, "bundle")
	os.MkdirAll(bundle, 0o700)
	r := &taskAPI.CreateTaskRequest{ID: "c", Bundle: bundle, Rootfs: []*types.Mount{
		{Type: "bind", Source: lower, Options: []string{"rbind", "ro"}},
		{Type: "format/overlay", Source: "overlay", Options: []string{"lowerdir={{ mount 1 }}:{{ mount 0 }}"}},
	}}
	if _, _, err := prepareRootfs(r, &specs.Spec{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("prepareRootfs: %v, want invalid argument", err)
	}
	infos, _ := mountinfo.Read(mountinfo.Self)
	for _, m := range infos {
		if strings.HasPrefix(m.MountPoint, bundle+"/") {
			t.Errorf("left mounted: %s", m.MountPoint)
		}
	}
	if _, err := os.Stat(filepath.Join(bundle, activationDirName)); !os.IsNotExist(err) {
		t.Errorf("activation directory left: %v", err)
	}
}
