package monitor

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/vc"
)

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHostSandboxes lays out state as vc, the shim (a root below vc's)
// and vc-runtime (a root per container) do, with this process standing
// in for the owner and the VM, and checks what Sandboxes finds.
func TestHostSandboxes(t *testing.T) {
	me := os.Getpid()
	start, err := proc.StartTime(me)
	if err != nil {
		t.Fatal(err)
	}
	running := func(id string, ann map[string]string) vc.SandboxStatus {
		return vc.SandboxStatus{ID: id, State: vc.StateRunning, OwnerPid: me, OwnerStart: start, VMPid: me, VMStart: start,
			Config: vc.SandboxConfig{ID: id, Annotations: ann}}
	}
	vcRoot, rtRoot := t.TempDir(), t.TempDir()
	writeJSON(t, filepath.Join(vcRoot, "web", "sandbox.json"), running("web", nil))
	stopped := running("old", nil)
	stopped.State = vc.StateStopped
	writeJSON(t, filepath.Join(vcRoot, "old", "sandbox.json"), stopped)
	dead := running("dead", nil)
	dead.OwnerStart = start + 1 // a reused pid
	writeJSON(t, filepath.Join(vcRoot, "dead", "sandbox.json"), dead)
	// The shim's: pod annotations in the pause container's spec.
	writeJSON(t, filepath.Join(vcRoot, "shim", "pod1", "sandbox.json"), running("pod1", map[string]string{"io.containerd.bundle": "/b"}))
	writeJSON(t, filepath.Join(vcRoot, "shim", "pod1", "container-pod1.json"), vc.ContainerStatus{ID: "pod1", Config: vc.ContainerConfig{
		Spec: &specs.Spec{Annotations: map[string]string{annPodName: "nginx", annPodNamespace: "prod"}}}})
	// The same id as vc's under the shim's root.
	writeJSON(t, filepath.Join(vcRoot, "shim", "web", "sandbox.json"), running("web", nil))
	// vc-runtime's: sandbox "vm" in a root per container.
	writeJSON(t, filepath.Join(rtRoot, "ctr1", "vm", "sandbox.json"), running("vm", nil))
	// Two levels down is not searched.
	writeJSON(t, filepath.Join(vcRoot, "a", "b", "deep", "sandbox.json"), running("deep", nil))

	h, err := NewHost([]string{vcRoot, rtRoot, filepath.Join(vcRoot, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	sbs, err := h.Sandboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Sandbox{}
	for _, sb := range sbs {
		got[sb.ID] = sb
	}
	if len(got) != 4 || len(sbs) != 4 {
		t.Fatalf("want web, shim/web, pod1, ctr1; got %+v", sbs)
	}
	if sb := got["pod1"]; sb.PodName != "nginx" || sb.PodNamespace != "prod" || sb.Root != filepath.Join(vcRoot, "shim") || sb.VMPid != me {
		t.Errorf("pod1: %+v", sb)
	}
	if sb := got["ctr1"]; sb.RecordedID != "vm" || sb.Root != filepath.Join(rtRoot, "ctr1") {
		t.Errorf("vc-runtime's: %+v", sb)
	}
	if sb, ok := got["shim/web"]; !ok || sb.Root != filepath.Join(vcRoot, "shim") || got["web"].Root != vcRoot {
		t.Errorf("duplicate id: %+v", sbs)
	}

	p, err := h.Proc(me)
	if err != nil {
		t.Fatal(err)
	}
	if p.CPUSeconds <= 0 || p.RSSBytes == 0 || p.Threads < 1 || !p.HaveOpenFDs || p.OpenFDs < 3 {
		t.Errorf("own process: %+v", p)
	}
}
