package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// loopDevice attaches an 8 MiB file with pattern at offset 0 to a loop
// device; the test's cleanup detaches it and fails if it stays.
func loopDevice(t *testing.T, pattern string) (dev string, major, minor int64) {
	t.Helper()
	dev = testenv.LoopDevice(t, 8<<20, pattern)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	return dev, int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
}

// withDevice adds a device at path with a device cgroup rule of access to
// spec, as docker's --device and a Kubernetes volumeDevices entry do.
func withDevice(spec *specs.Spec, path, typ string, major, minor int64, access string) {
	mode := os.FileMode(0o660)
	spec.Linux.Devices = append(spec.Linux.Devices, specs.LinuxDevice{Path: path, Type: typ, Major: major, Minor: minor, FileMode: &mode})
	if spec.Linux.Resources == nil {
		spec.Linux.Resources = &specs.LinuxResources{}
	}
	spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: access})
}

// qemuDisks lists the host files QEMU has open as block nodes (QMP
// query-named-block-nodes), through the sandbox's attach socket.
func qemuDisks(ctx context.Context, t *testing.T, s *vc.Sandbox) string {
	t.Helper()
	q, err := qmp.Dial(ctx, filepath.Join(s.Dir(), "vm", "qmp-attach.sock"), nil)
	if err != nil {
		t.Fatalf("qmp: %v", err)
	}
	defer q.Close()
	var nodes []struct {
		NodeName string `json:"node-name"`
		File     string `json:"file"`
	}
	if err := q.Execute(ctx, "query-named-block-nodes", nil, &nodes); err != nil {
		t.Fatalf("query-named-block-nodes: %v", err)
	}
	// A confined QEMU opens a hotplugged disk as /dev/fdset/N: its set's
	// tag names the host path ("disk/ID=PATH").
	sets, err := q.FDSets(ctx)
	if err != nil {
		t.Fatalf("query-fdsets: %v", err)
	}
	var b strings.Builder
	for _, n := range nodes {
		file := n.File
		for opaque, id := range sets {
			if _, path, ok := strings.Cut(opaque, "="); ok && file == fmt.Sprintf("/dev/fdset/%d", id) {
				file = path
			}
		}
		b.WriteString(n.NodeName + "=" + file + "\n")
	}
	return b.String()
}

// TestBlockDevicePassthrough: a host loop device in a container's spec
// (Linux.Devices, the host's major:minor) is hotplugged into the VM as a
// virtio-blk disk; the container reads what the host wrote, writes what
// the host then reads, sees its size; a read-only rule makes it
// read-only; the disk leaves QEMU with the container; two containers
// share it; a char device the guest does not have is refused, one it has
// works; a privileged container gets none of the host's devices; a device
// mounted on the host is refused.
func TestBlockDevicePassthrough(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	const pattern = "vc-block-pattern-4711"
	dev, major, minor := loopDevice(t, pattern)
	s := newSandbox(ctx, t, "e2e-blockdev", "")

	run := func(cid, script string, spec func(*specs.Spec), plugged bool) (string, int32) {
		t.Helper()
		sp := oci.DefaultSpec([]string{"sh", "-c", script}, nil, "/", false)
		spec(sp)
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: sp}); err != nil {
			t.Fatalf("create %s: %v", cid, err)
		}
		if n := qemuDisks(ctx, t, s); strings.Contains(n, dev) != plugged {
			t.Errorf("container %s created: QEMU's nodes (want %s: %v):\n%s", cid, dev, plugged, n)
		}
		var out bytes.Buffer
		streams := s.Container(cid).IOStream(ctx, cid, vc.IO{Stdout: &out, Stderr: &out})
		if err := s.Container(cid).Start(ctx); err != nil {
			t.Fatalf("start %s: %v", cid, err)
		}
		code, err := s.Container(cid).Wait(ctx)
		if err != nil {
			t.Fatalf("wait %s: %v", cid, err)
		}
		<-streams
		if err := s.Container(cid).Delete(ctx); err != nil {
			t.Fatalf("delete %s: %v", cid, err)
		}
		if n := qemuDisks(ctx, t, s); strings.Contains(n, dev) {
			t.Errorf("container %s deleted: QEMU still has %s:\n%s", cid, dev, n)
		}
		return out.String(), code
	}

	out, code := run("rw", `set -e
test -b /dev/xvda
head -c 21 /dev/xvda; echo
blockdev --getsize64 /dev/xvda
printf from-the-guest | dd of=/dev/xvda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null
echo null-ok > /dev/mynull
echo done`, func(sp *specs.Spec) {
		withDevice(sp, "/dev/xvda", "b", major, minor, "rwm")
		withDevice(sp, "/dev/mynull", "c", 1, 3, "rwm") // the guest's own /dev/null
	}, true)
	if code != 0 || out != pattern+"\n8388608\ndone\n" {
		t.Fatalf("rw container: exit %d, output %q; want %q", code, out, pattern+"\n8388608\ndone\n")
	}
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 14)
	_, err = f.ReadAt(got, 512)
	f.Close()
	if err != nil || string(got) != "from-the-guest" {
		t.Fatalf("host reads %q (%v) at 512 of %s, want what the guest wrote", got, err, dev)
	}

	// A rule allowing only reads makes the disk read-only.
	out, code = run("ro", `head -c 21 /dev/xvda; echo
if printf x | dd of=/dev/xvda conv=notrunc,fsync 2>/dev/null; then echo written; else echo refused; fi`, func(sp *specs.Spec) {
		withDevice(sp, "/dev/xvda", "b", major, minor, "r")
	}, true)
	if code != 0 || out != pattern+"\nrefused\n" {
		t.Fatalf("ro container: exit %d, output %q; want the pattern, then refused", code, out)
	}

	// Two containers passing the same device at once share one disk (QEMU
	// cannot open it twice for writing), kept until the last goes.
	for _, cid := range []string{"s1", "s2"} {
		sp := oci.DefaultSpec([]string{"sh", "-c", "head -c 21 /dev/xvda; echo; exec sleep 600"}, nil, "/", false)
		withDevice(sp, "/dev/xvda", "b", major, minor, "rwm")
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: cid, Rootfs: root, Spec: sp}); err != nil {
			t.Fatalf("create %s beside another passing %s: %v", cid, dev, err)
		}
		var out testutil.SyncBuffer
		s.Container(cid).IOStream(ctx, cid, vc.IO{Stdout: &out, Stderr: &out})
		if err := s.Container(cid).Start(ctx); err != nil {
			t.Fatalf("start %s: %v", cid, err)
		}
		waitFor(t, func() bool { return strings.Contains(out.String(), "\n") }, cid+"'s first line")
		if got := out.String(); got != pattern+"\n" {
			t.Errorf("shared device in %s: %q, want the pattern", cid, got)
		}
	}
	for i, cid := range []string{"s1", "s2"} {
		if err := s.Container(cid).Stop(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := s.Container(cid).Delete(ctx); err != nil {
			t.Fatalf("delete %s: %v", cid, err)
		}
		if n := qemuDisks(ctx, t, s); strings.Contains(n, dev) != (i == 0) {
			t.Errorf("%s deleted (%d of 2): QEMU's nodes:\n%s", cid, i+1, n)
		}
	}

	// A host char device the guest lacks (/dev/kvm, 10:232) is refused,
	// naming it; nothing is plugged.
	sp := oci.DefaultSpec([]string{"true"}, nil, "/", false)
	withDevice(sp, "/dev/xvda", "b", major, minor, "rwm")
	withDevice(sp, "/dev/kvm", "c", 10, 232, "rwm")
	err = s.CreateContainer(ctx, vc.ContainerConfig{ID: "char", Rootfs: root, Spec: sp})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "/dev/kvm") {
		t.Fatalf("char device 10:232: %v, want NotImplemented naming /dev/kvm", err)
	}
	if n := qemuDisks(ctx, t, s); strings.Contains(n, dev) {
		t.Errorf("refused container: QEMU has %s:\n%s", dev, n)
	}
	// A privileged container (a rule allowing every device; containerd
	// and podman put the host's devices in its spec) gets the guest's
	// devices, not the host's: the loop device and /dev/kvm are left out.
	out, code = run("priv", "test -e /dev/xvda && echo xvda; test -e /dev/kvm && echo kvm; echo ok > /dev/mynull && echo null-ok", func(sp *specs.Spec) {
		withDevice(sp, "/dev/xvda", "b", major, minor, "rwm")
		withDevice(sp, "/dev/kvm", "c", 10, 232, "rwm")
		withDevice(sp, "/dev/mynull", "c", 1, 3, "rwm")
		sp.Linux.Resources.Devices = append(sp.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Access: "rwm"})
	}, false)
	if code != 0 || out != "null-ok\n" {
		t.Errorf("privileged container: exit %d, %q; want the host's devices left out, the guest's there", code, out)
	}

	// A device the host does not have is not found.
	sp = oci.DefaultSpec([]string{"true"}, nil, "/", false)
	withDevice(sp, "/dev/xvdz", "b", 4095, 1048575, "rwm")
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "nodev", Rootfs: root, Spec: sp}); !errdefs.IsNotFound(err) {
		t.Fatalf("block device 4095:1048575: %v, want NotFound", err)
	}
	// A device mounted on the host is refused.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	mnt := t.TempDir()
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, 0)
	sp = oci.DefaultSpec([]string{"true"}, nil, "/", false)
	withDevice(sp, "/dev/xvda", "b", major, minor, "rwm")
	err = s.CreateContainer(ctx, vc.ContainerConfig{ID: "mounted", Rootfs: root, Spec: sp})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "is mounted on "+mnt) {
		t.Fatalf("a device mounted on the host: %v, want FailedPrecondition saying where", err)
	}
}

// TestRunDevice: vc run --device HOST:CTR[:PERMS], docker's flag: the
// loop device is read in the container; a bad flag fails before a VM
// boots, naming it.
func TestRunDevice(t *testing.T) {
	const pattern = "vc-run-device"
	dev, _, _ := loopDevice(t, pattern)
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--device", dev+":/dev/xvda:r", "busybox", "--",
		"sh", "-c", "head -c 13 /dev/xvda; echo; blockdev --getsize64 /dev/xvda")
	if want := pattern + "\n8388608\n"; code != 0 || out != want {
		t.Fatalf("vc run --device: exit %d, %q, want %q; stderr %s", code, out, want, errOut)
	}
	for _, bad := range []string{"/nonexistent", dev + ":/dev/xvda:rx", "relative"} {
		_, errOut, code := vcRun(t, nil, "run", "--rm", "--device", bad, "busybox", "true")
		if code == 0 || !strings.Contains(errOut, "--device") {
			t.Errorf("vc run --device %s: exit %d, stderr %q; want a failure naming --device", bad, code, errOut)
		}
	}
}
