package agent_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/internal/testutil"
)

// mounted tells whether path is a mount point in the agent's mount
// namespace.
func (e *env) mounted(path string) bool {
	e.t.Helper()
	infos, err := mountinfo.Read(fmt.Sprintf("/proc/%d/mountinfo", e.a.Cmd.Process.Pid))
	if err != nil {
		e.t.Fatal(err)
	}
	_, ok := mountinfo.Lookup(infos, path)
	return ok
}

// TestStorages mounts sandbox and container storages (the ephemeral
// driver: a tmpfs) and checks they are released.
func TestStorages(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	dir := t.TempDir()
	sbxShm := filepath.Join(dir, "sbx-shm")
	_, err := e.a.Svc.CreateSandbox(e.ctx(10*time.Second), &pb.CreateSandboxRequest{
		SandboxId: "storages",
		Storages:  []*pb.Storage{{Driver: "ephemeral", MountPoint: sbxShm}},
	})
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	if !e.mounted(sbxShm) {
		t.Errorf("sandbox storage %s not mounted", sbxShm)
	}

	vol := filepath.Join(dir, "vol")
	withVolume := func(script string) *pb.Spec {
		s := spec(rootfs, "sh", "-c", script)
		s.Mounts = append(s.Mounts, &pb.Mount{Destination: "/data", Source: vol, Type: "bind", Options: []string{"rbind", "rw"}})
		return s
	}
	storages := []*pb.Storage{{Driver: "ephemeral", MountPoint: vol}}
	a, b := newID("vol-a"), newID("vol-b")
	if err := e.tryCreate(&pb.CreateContainerRequest{ContainerId: a, OCI: withVolume("grep ' /data ' /proc/mounts; echo shared > /data/f"), Storages: storages}); err != nil {
		t.Fatal(err)
	}
	e.start(a)
	if out := e.readAll(a, "", false); !strings.Contains(out, "tmpfs") {
		t.Errorf("/data in the container: %q, want a tmpfs", out)
	}
	e.wait(a, "")
	// A second container with the same storage shares it.
	if err := e.tryCreate(&pb.CreateContainerRequest{ContainerId: b, OCI: withVolume("cat /data/f"), Storages: storages}); err != nil {
		t.Fatal(err)
	}
	e.start(b)
	if out := e.readAll(b, "", false); out != "shared\n" {
		t.Errorf("second container read %q", out)
	}
	for i, id := range []string{a, b} {
		if !e.mounted(vol) {
			t.Fatalf("storage unmounted while %d containers use it", 2-i)
		}
		if _, err := e.a.Svc.RemoveContainer(e.ctx(10*time.Second), &pb.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	if e.mounted(vol) {
		t.Errorf("storage %s still mounted after its containers were removed", vol)
	}

	// A failing storage undoes the ones mounted before it.
	first := filepath.Join(dir, "first")
	err = e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("badvol"), OCI: spec(rootfs, "true"), Storages: []*pb.Storage{
		{Driver: "ephemeral", MountPoint: first},
		{Driver: "no-such-driver", MountPoint: filepath.Join(dir, "second")},
	}})
	wantCode(t, "bad storage", err, codes.InvalidArgument, "storages[1]")
	if e.mounted(first) {
		t.Errorf("%s still mounted after the create failed", first)
	}
	if !e.mounted(sbxShm) {
		t.Errorf("sandbox storage %s gone", sbxShm)
	}
}
