package runtime

import (
	"os"
	"testing"

	"github.com/virtcontainers/vc/internal/testenv"
)

// TestPodmanDevice: podman run --device HOSTLOOP:/dev/xvda through
// vc-runtime: the host's loop device is hotplugged into the VM; the
// container reads what the host wrote and sees its size; a :r device
// cannot be written; --privileged passes none of the host's devices.
func TestPodmanDevice(t *testing.T) {
	const pattern = "vc-podman-device"
	dev := testenv.LoopDevice(t, 4<<20, pattern)
	out2, errOut, code, cid := cidRun(t, "--rm", "--device", dev+":/dev/xvda", "docker.io/library/busybox:vc-test",
		"sh", "-c", "test -b /dev/xvda && head -c 16 /dev/xvda && echo && blockdev --getsize64 /dev/xvda")
	if want := pattern + "\n4194304\n"; code != 0 || out2 != want {
		t.Fatalf("podman run --device %s: exit %d, %q, want %q; stderr %s", dev, code, out2, want, errOut)
	}
	noneLeft(t, cid)
	out2, errOut, code, cid = cidRun(t, "--rm", "--device", dev+":/dev/xvda:r", "docker.io/library/busybox:vc-test",
		"sh", "-c", "head -c 16 /dev/xvda; echo; if printf x | dd of=/dev/xvda conv=notrunc,fsync 2>/dev/null; then echo written; else echo refused; fi")
	if want := pattern + "\nrefused\n"; code != 0 || out2 != want {
		t.Fatalf("podman run --device %s:/dev/xvda:r: exit %d, %q, want %q; stderr %s", dev, code, out2, want, errOut)
	}
	noneLeft(t, cid)
	// --privileged puts every host device in the spec: the VM gets none
	// of them (the host's loop device stays out), the guest's own are
	// there.
	out2, errOut, code, cid = cidRun(t, "--rm", "--privileged", "docker.io/library/busybox:vc-test",
		"sh", "-c", "test -e "+dev+" && echo host-device; test -c /dev/null && echo null")
	if code != 0 || out2 != "null\n" {
		t.Fatalf("podman run --privileged: exit %d, %q, want the guest's devices only; stderr %s", code, out2, errOut)
	}
	noneLeft(t, cid)
	b := make([]byte, len(pattern))
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	f.ReadAt(b, 0)
	f.Close()
	if string(b) != pattern {
		t.Errorf("the read-only container changed the device: %q", b)
	}
}
