package containerd_test

import "testing"

// TestVCCtrVirtioFS: with shared_fs = "virtio-fs" in the shim's
// configuration, a container's root reaches the VM over virtio-fs, and
// what it writes lands in its snapshot.
func TestVCCtrVirtioFS(t *testing.T) {
	d := startVC(t, `shared_fs = "virtio-fs"`)
	out, stderr, code := d.ctrRun(t, "vc-virtiofs", "sh", "-c", `awk '$2 == "/" {print $3}' /proc/mounts; echo written > /w; cat /w`)
	if code != 0 || out != "virtiofs\nwritten\n" {
		t.Fatalf("ctr run with virtio-fs: exit %d, stdout %q, stderr %s", code, out, stderr)
	}
}
