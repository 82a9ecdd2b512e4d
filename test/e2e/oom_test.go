package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// A container over its memory limit is OOM-killed by the guest's kernel
// (the guest runs cgroup v2): GetOOMEvent names it, its exit status is
// 128+SIGKILL, and a sibling without a limit in the same VM goes on.
func TestOOMInVM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	const id = "e2e-oom"
	s := newSandbox(ctx, t, id, "")

	// Whoever the kernel OOM-kills in first, from now on.
	type oomResult struct {
		cid string
		err error
	}
	oomc := make(chan oomResult, 1)
	go func() {
		cid, err := s.GetOOMEvent(ctx)
		oomc <- oomResult{cid, err}
	}()

	// The sibling, without a limit, uses more than the other's limit and
	// stays.
	spec := oci.DefaultSpec([]string{"sh", "-c", "dd if=/dev/zero of=/dev/null bs=48M count=1 && echo sibling-ok && exec sleep 600"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "sibling", Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create sibling: %v", err)
	}
	var sibOut syncBuffer
	sibStreams := s.Container("sibling").IOStream(ctx, "sibling", vc.IO{Stdout: &sibOut, Stderr: &sibOut})
	if err := s.Container("sibling").Start(ctx); err != nil {
		t.Fatalf("start sibling: %v", err)
	}
	sibExit := make(chan int32, 1)
	go func() {
		code, _ := s.Container("sibling").WaitProcess(ctx, "sibling")
		sibExit <- code
	}()
	for !strings.Contains(sibOut.String(), "sibling-ok") {
		select {
		case code := <-sibExit:
			t.Fatalf("sibling exited with %d before its allocation was done: %q", code, sibOut.String())
		case <-ctx.Done():
			t.Fatalf("sibling never allocated its 48 MiB: %q", sibOut.String())
		case <-time.After(100 * time.Millisecond):
		}
	}

	// The hog: a 128 MiB buffer in a 32 MiB cgroup (no swap in the guest).
	// It first shows its cgroup: a single "0::" line on cgroup v2.
	limit := int64(32 << 20)
	spec = oci.DefaultSpec([]string{"sh", "-c", "cat /proc/self/cgroup; dd if=/dev/zero of=/dev/null bs=128M count=1 && echo dd-survived"}, nil, "/", false)
	spec.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "hog", Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create hog: %v", err)
	}
	var hogOut syncBuffer
	hogStreams := s.Container("hog").IOStream(ctx, "hog", vc.IO{Stdout: &hogOut, Stderr: &hogOut})
	if err := s.Container("hog").Start(ctx); err != nil {
		t.Fatalf("start hog: %v", err)
	}
	select {
	case r := <-oomc:
		if r.err != nil || r.cid != "hog" {
			t.Errorf("GetOOMEvent: %q, %v; want hog", r.cid, r.err)
		}
	case <-time.After(2 * time.Minute):
		t.Errorf("GetOOMEvent: nothing after 2 minutes; hog's output so far %q", hogOut.String())
	}
	code, err := s.Container("hog").Wait(ctx)
	if err != nil {
		t.Fatalf("wait hog: %v", err)
	}
	<-hogStreams
	out := hogOut.String()
	// dd is killed; the shell that ran it exits 128+SIGKILL after it.
	if code != 137 {
		t.Errorf("hog exit status %d, want 137 (SIGKILL); output %q", code, out)
	}
	if !strings.HasPrefix(out, "0::/") || strings.Count(out, ":/") != 1 {
		t.Errorf("hog's /proc/self/cgroup: %q, want one cgroup v2 line", out)
	}
	if strings.Contains(out, "dd-survived") {
		t.Errorf("dd of 128 MiB survived a 32 MiB limit: %q", out)
	}
	if st, err := s.Container("hog").Status(ctx); err != nil || st.State != vc.StateStopped || st.ExitCode != 137 {
		t.Errorf("hog status: %+v, %v; want stopped with 137", st, err)
	}
	// One kill, one event (on cgroup v2 memory.events changes more than
	// once).
	octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
	if cid, err := s.GetOOMEvent(octx); err == nil {
		t.Errorf("a second OOM event: %q", cid)
	}
	ocancel()
	if err := s.Container("hog").Delete(ctx); err != nil {
		t.Errorf("delete hog: %v", err)
	}

	// The sibling is still there.
	select {
	case code := <-sibExit:
		t.Errorf("sibling exited with %d after the hog's OOM kill", code)
	default:
	}
	if ps, err := s.Container("sibling").ProcessList(ctx, "-o", "pid,args"); err != nil || !strings.Contains(ps, "sleep 600") {
		t.Errorf("sibling's processes after the OOM kill: %q, %v", ps, err)
	}
	if err := s.Container("sibling").Stop(ctx, time.Second); err != nil {
		t.Errorf("stop sibling: %v", err)
	}
	<-sibStreams
	if err := s.Container("sibling").Delete(ctx); err != nil {
		t.Errorf("delete sibling: %v", err)
	}
}
