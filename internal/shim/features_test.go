package shim

import (
	"bytes"
	"slices"
	"testing"

	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// TestInfoFeatures decodes the shim's Info as containerd v2.3.1 does (its
// client's RuntimeInfo and CRI's introspectRuntimeFeatures: typeurl, then
// a *features.Features) and checks what CRI and the task manager read.
func TestInfoFeatures(t *testing.T) {
	info, err := NewManager().Info(t.Context(), bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	if info.GetName() != RuntimeName {
		t.Errorf("name %q, want %q", info.GetName(), RuntimeName)
	}
	if info.GetFeatures() == nil {
		t.Fatal("Info has no features")
	}
	// containerd registers the OCI features under this URL (core/runtime,
	// client); runc's shim answers with it.
	const url = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
	if got := info.GetFeatures().GetTypeUrl(); got != url {
		t.Errorf("features type URL %q, want %q", got, url)
	}
	v, err := typeurl.UnmarshalAny(info.GetFeatures())
	if err != nil {
		t.Fatalf("decode features: %v", err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features decode to %T, want *features.Features", v)
	}
	for _, o := range []string{"ro", "rro", "rbind", "rnosuid", "rnodev", "rnoexec", "nosymfollow", "tmpcopyup"} {
		if !slices.Contains(f.MountOptions, o) {
			t.Errorf("mount option %q not announced", o)
		}
	}
	if f.Linux == nil {
		t.Fatal("no linux features")
	}
	for _, ns := range []string{"ipc", "uts", "pid", "network", "mount", "cgroup"} {
		if !slices.Contains(f.Linux.Namespaces, ns) {
			t.Errorf("namespace %q not announced", ns)
		}
	}
	// CRI enables user namespaces only with both "user" and idmap mounts
	// (supportsCRIUserns), and the task manager refuses idmap mounts
	// unless mountExtensions.idmap.enabled: neither is supported.
	if slices.Contains(f.Linux.Namespaces, "user") {
		t.Error("user namespaces announced, but the agent does not support them")
	}
	if m := f.Linux.MountExtensions; m == nil || m.IDMap == nil || m.IDMap.Enabled == nil || *m.IDMap.Enabled {
		t.Errorf("mountExtensions.idmap must be present and disabled, got %+v", m)
	}
	if s := f.Linux.Seccomp; s == nil || s.Enabled == nil || !*s.Enabled {
		t.Error("seccomp not announced as enabled")
	}
	if len(f.Hooks) != 0 {
		t.Errorf("hooks %v announced, but the guest cannot run host hooks", f.Hooks)
	}
	// containerd passes these rootfs mounts as they are (prepareRootfs
	// activates them) instead of activating them in the daemon.
	if got := info.GetAnnotations()["containerd.io/runtime-allow-mounts"]; got != "erofs,format/*,mkdir/*" {
		t.Errorf("runtime-allow-mounts %q, want erofs,format/*,mkdir/*", got)
	}
	if info.GetAnnotations()["io.virtcontainers.annotations"] == "" {
		t.Error("the runtime's annotations are gone from Info")
	}
}
