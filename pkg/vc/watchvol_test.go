package vc

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/kubevol/kubevoltest"
	"github.com/virtcontainers/vc/pkg/agent"
)

// syncAgent records the SyncWatchedVolume calls it is served (the other
// methods are not: ttRPC answers them Unimplemented).
type syncAgent struct {
	pb.AgentServiceService
	mu    sync.Mutex
	calls []*pb.SyncWatchedVolumeRequest
}

func (a *syncAgent) SyncWatchedVolume(ctx context.Context, req *pb.SyncWatchedVolumeRequest) (*emptypb.Empty, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, req)
	return &emptypb.Empty{}, nil
}

func (a *syncAgent) seen() []*pb.SyncWatchedVolumeRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*pb.SyncWatchedVolumeRequest(nil), a.calls...)
}

// watchSandbox is an owner's sandbox whose agent is served over ttRPC by
// impl (nil: no service, every call Unimplemented, as an older agent).
func watchSandbox(t *testing.T, impl pb.AgentServiceService) *Sandbox {
	t.Helper()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(agent.StatusErrors))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if impl != nil {
		pb.RegisterAgentServiceService(srv, impl)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := agent.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	return &Sandbox{id: "sb", log: slog.Default(), owner: true, client: client, agent: pb.NewAgentServiceClient(client), status: SandboxStatus{State: StateRunning}}
}

// kubeletDir makes a volume directory at a kubelet's path under a
// temporary root, written once.
func kubeletDir(t *testing.T, plugin, name string, files map[string]kubevoltest.File) string {
	dir := filepath.Join(t.TempDir(), "kubelet/pods/0b1c/volumes/kubernetes.io~"+plugin, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	kubevoltest.KubeletWrite(t, dir, files, -1)
	return dir
}

// TestWatchVolumes: a container's kubelet volumes become copies in the
// guest (the mount's source is the copy; other mounts, a subPath among
// them, stay as they are), one per volume whatever the containers using
// it; a kubelet write is synced; the last container's removal removes
// the copy and its watch, after which writes are not synced; the
// sandbox's end leaves no goroutine.
func TestWatchVolumes(t *testing.T) {
	g0 := runtime.NumGoroutine()
	a := &syncAgent{}
	s := watchSandbox(t, a)
	cm := kubeletDir(t, "configmap", "cm", map[string]kubevoltest.File{"k": {Data: "one", Mode: 0o644}})
	big := kubeletDir(t, "secret", "big", map[string]kubevoltest.File{"k": {Data: strings.Repeat("x", 3<<20), Mode: 0o644}})
	sub := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(cm))), "volume-subpaths/cm/c/0")
	mounts := func() *specs.Spec {
		return &specs.Spec{Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/etc/cm", Type: "bind", Source: cm, Options: []string{"rbind", "ro"}},
			{Destination: "/etc/big", Type: "bind", Source: big, Options: []string{"rbind", "ro"}},
			{Destination: "/etc/k", Type: "bind", Source: sub, Options: []string{"rbind", "ro"}},
		}}
	}
	ctx := t.Context()
	s1, s2 := mounts(), mounts()
	s.watchVolumes(ctx, "c1", s1)
	s.watchVolumes(ctx, "c2", s2)
	copyPath := guestWatchedDir + "/" + watchedID(cm)
	for i, sp := range []*specs.Spec{s1, s2} {
		if got := sp.Mounts[1].Source; got != copyPath {
			t.Errorf("container %d: the ConfigMap's source %q, want the copy %s", i+1, got, copyPath)
		}
		if sp.Mounts[2].Source != big || sp.Mounts[3].Source != sub || sp.Mounts[0].Source != "proc" {
			t.Errorf("container %d: mounts other than the ConfigMap changed: %+v", i+1, sp.Mounts)
		}
	}
	calls := a.seen()
	if len(calls) != 1 {
		t.Fatalf("%d syncs for one volume used by two containers, want 1", len(calls))
	}
	if c := calls[0]; c.Id != watchedID(cm) || c.SizeLimit == 0 || len(c.Data) != 2 || string(c.Data[1].Data) != "one" {
		t.Errorf("the first sync: %v", c)
	}

	ts := kubevoltest.KubeletWrite(t, cm, map[string]kubevoltest.File{"k": {Data: "two", Mode: 0o600}}, -1)
	deadline := time.Now().Add(10 * time.Second)
	for len(a.seen()) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	calls = a.seen()
	if len(calls) != 2 {
		t.Fatalf("%d syncs 10 s after the kubelet's write, want 2", len(calls))
	}
	if c := calls[1]; c.DataDir != ts || string(c.Data[1].Data) != "two" || c.Data[1].Mode&0o777 != 0o600 {
		t.Errorf("the sync after the write: data_dir %q (want %q), %v", c.DataDir, ts, c.Data)
	}

	s.unwatchVolumes(ctx, "c1")
	if n := len(a.seen()); n != 2 {
		t.Errorf("%d calls after one of two containers went, want 2 (the copy stays)", n)
	}
	s.unwatchVolumes(ctx, "c2")
	calls = a.seen()
	if len(calls) != 3 || !calls[2].Remove || calls[2].Id != watchedID(cm) {
		t.Fatalf("after the last container: calls %v, want a remove of %s", calls, watchedID(cm))
	}
	if n := s.vols.w.Len(); n != 0 {
		t.Errorf("%d directories watched after the last container went", n)
	}
	kubevoltest.KubeletWrite(t, cm, map[string]kubevoltest.File{"k": {Data: "three", Mode: 0o600}}, -1)
	time.Sleep(300 * time.Millisecond)
	if n := len(a.seen()); n != 3 {
		t.Errorf("%d calls after a write to a volume no container uses, want 3", n)
	}
	s.stopWatches()
	s.client.Close()
	time.Sleep(100 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > g0+3 {
		t.Errorf("%d goroutines after the sandbox's watches stopped, %d before", n, g0)
	}
}

// TestWatchVolumesOldAgent: an agent without SyncWatchedVolume leaves the
// volumes 9p binds (the mount's source unchanged), and is asked once.
func TestWatchVolumesOldAgent(t *testing.T) {
	s := watchSandbox(t, nil)
	cm := kubeletDir(t, "configmap", "cm", map[string]kubevoltest.File{"k": {Data: "one", Mode: 0o644}})
	for _, cid := range []string{"c1", "c2"} {
		sp := &specs.Spec{Mounts: []specs.Mount{{Destination: "/etc/cm", Type: "bind", Source: cm, Options: []string{"rbind", "ro"}}}}
		s.watchVolumes(t.Context(), cid, sp)
		if sp.Mounts[0].Source != cm {
			t.Errorf("%s: the ConfigMap's source %q with an agent lacking the RPC, want %s (9p)", cid, sp.Mounts[0].Source, cm)
		}
	}
	if !s.vols.noRPC {
		t.Error("the agent's lack of SyncWatchedVolume was not recorded")
	}
	if n := s.vols.w.Len(); n != 0 {
		t.Errorf("%d directories watched with no copy", n)
	}
	s.stopWatches()
}
