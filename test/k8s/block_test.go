package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testenv"
)

// hostLoop attaches an 8 MiB file, with pattern at offset 0, to a loop
// device; the test's cleanup (registered first, so it runs last) detaches
// it and fails if the file is still attached.
func hostLoop(t *testing.T, pattern string) string {
	t.Helper()
	return testenv.LoopDevice(t, 8<<20, pattern)
}

// openers lists the processes (pid/comm) holding path open.
func openers(path string) []string {
	var out []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == path {
			pid := strings.Split(fd, "/")[2]
			comm, _ := os.ReadFile("/proc/" + pid + "/comm")
			if p := pid + "/" + strings.TrimSpace(string(comm)); !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// TestRawBlockVolume: a local PersistentVolume with volumeMode Block, on a
// loop device of the host, reaches a pod through a PVC and volumeDevices.
// The container sees a block device at devicePath, reads the pattern the
// host wrote, sees its size, and writes what the host then reads. With vc
// the device is the host's loop device hotplugged into the VM (QEMU holds
// it open while the pod runs, and lets go when it is deleted). A second
// container of the pod has the same device (on vc the same disk).
func TestRawBlockVolume(t *testing.T) {
	t.Parallel()
	forEachClass(t, "block", func(t *testing.T, n *ns, rc string) {
		pattern := "vc-k8s-block-" + rc
		dev := hostLoop(t, pattern)
		pv := "block-pv-" + rc
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if out, err := n.c.kubectlErr(ctx, nil, "delete", "pv", pv, "--ignore-not-found", "--wait", "--timeout=170s"); err != nil {
				t.Errorf("delete pv %s: %v: %s", pv, err, out)
			}
		})
		n.apply(fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: %[1]s}
spec:
  capacity: {storage: 8Mi}
  volumeMode: Block
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {namespace: %[2]s, name: c}
  local: {path: %[3]s}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {key: kubernetes.io/hostname, operator: In, values: [vc-node]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: c}
spec:
  volumeMode: Block
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: %[1]s
  resources: {requests: {storage: 8Mi}}
---
`, pv, n.name, dev) + podManifest("p", rc, fmt.Sprintf(`  containers:
  - name: c
    image: %[1]s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeDevices:
    - {name: raw, devicePath: /dev/xvda}
  - name: d
    image: %[1]s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeDevices:
    - {name: raw, devicePath: /dev/xvdb}
  volumes:
  - name: raw
    persistentVolumeClaim: {claimName: c}
`, image)))
		n.waitReady("p")
		if got := n.exec("p", "c", "sh", "-c", "test -b /dev/xvda && echo block"); got != "block\n" {
			t.Errorf("test -b /dev/xvda: %q, want a block device", got)
		}
		if got := n.exec("p", "c", "head", "-c", fmt.Sprint(len(pattern)), "/dev/xvda"); got != pattern {
			t.Errorf("the device's first bytes: %q, want the host's %q", got, pattern)
		}
		if got := n.exec("p", "c", "blockdev", "--getsize64", "/dev/xvda"); strings.TrimSpace(got) != "8388608" {
			t.Errorf("blockdev --getsize64: %q, want 8388608", got)
		}
		n.exec("p", "c", "sh", "-c", "printf written-in-"+rc+" | dd of=/dev/xvda bs=512 seek=1 conv=notrunc,fsync 2>/dev/null")
		want := "written-in-" + rc
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(want))
		_, err = f.ReadAt(got, 512)
		f.Close()
		if err != nil || string(got) != want {
			t.Errorf("host reads %q (%v) at 512 of %s, want what the container wrote", got, err, dev)
		}
		// The pod's second container has the same device, and sees what
		// the first wrote.
		if got := n.exec("p", "d", "sh", "-c", "test -b /dev/xvdb && dd if=/dev/xvdb bs=512 skip=1 count=1 2>/dev/null | head -c "+fmt.Sprint(len(want))); got != want {
			t.Errorf("the second container reads %q at 512 of /dev/xvdb, want %q", got, want)
		}
		if rc == "vc" {
			if o := openers(dev); len(o) != 1 || !strings.Contains(o[0], "qemu") {
				t.Errorf("%s held open by %v, want QEMU alone (the disk passed to the VM)", dev, o)
			}
		}
		n.k("delete", "pod", "p", "--wait", "--timeout=170s")
		n.k("delete", "pvc", "c", "--wait", "--timeout=170s")
		if o := openers(dev); len(o) != 0 {
			t.Errorf("%s still held open by %v once the pod is gone", dev, o)
		}
	})
}
