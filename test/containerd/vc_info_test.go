package containerd_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
)

// TestVCRuntimeInfo asks containerd for the vc runtime's info, as CRI and
// its task manager do (the introspection service runs the shim's -info):
// the OCI features come back decoded, with what the VM supports.
func TestVCRuntimeInfo(t *testing.T) {
	d := startVC(t, "")
	out := d.Ctr(t, "plugins", "inspect-runtime", "--runtime", containerd.VCRuntime)
	var info struct {
		Name        string
		Features    *features.Features
		Annotations map[string]string
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("ctr plugins inspect-runtime: %v: %s", err, out)
	}
	f := info.Features
	if info.Name != containerd.VCRuntime || f == nil || f.Linux == nil {
		t.Fatalf("runtime info without OCI features: %s", out)
	}
	if !slices.Contains(f.MountOptions, "rro") {
		t.Errorf("mount option rro not announced: %v", f.MountOptions)
	}
	for _, ns := range []string{"ipc", "uts", "pid", "network"} {
		if !slices.Contains(f.Linux.Namespaces, ns) {
			t.Errorf("namespace %s not announced: %v", ns, f.Linux.Namespaces)
		}
	}
	if slices.Contains(f.Linux.Namespaces, "user") {
		t.Errorf("user namespaces announced: %v", f.Linux.Namespaces)
	}
	if got := info.Annotations["containerd.io/runtime-allow-mounts"]; got == "" {
		t.Errorf("no runtime-allow-mounts annotation: %v", info.Annotations)
	}
}
