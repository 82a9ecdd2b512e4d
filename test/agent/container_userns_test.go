package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestUserNamespace: a container with a user namespace and uid/gid
// mappings runs as root inside and as the mapped ids outside, with its
// root below directories only root may search (the test's temporary
// directory, like the host's share in a VM) and its network the agent's.
func TestUserNamespace(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t) // below t.TempDir(): 0700
	out := t.TempDir()
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	id := newID("userns")
	s := spec(rootfs, "sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; touch /var/by-root; ls /sys/kernel >/dev/null && echo sys-ok")
	s.Linux.Namespaces = append(s.Linux.Namespaces, &pb.LinuxNamespace{Type: "user"})
	s.Linux.UIDMappings = []*pb.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s.Linux.GIDMappings = []*pb.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	s.Mounts = append(s.Mounts, &pb.Mount{Destination: "/var", Source: out, Type: "bind", Options: []string{"rbind"}})
	if err := e.tryCreate(&pb.CreateContainerRequest{ContainerId: id, OCI: s}); err != nil {
		t.Fatalf("create: %v", err)
	}
	e.start(id)
	got := e.readAll(id, "", false) + e.readAll(id, "", true)
	if st := e.wait(id, ""); st != 0 {
		t.Errorf("exit status %d: %q", st, got)
	}
	for _, w := range []string{"uid=0(root) gid=0(root)", "0     100000      65536", "0     200000      65536", "sys-ok"} {
		if !strings.Contains(got, w) {
			t.Errorf("output %q lacks %q", got, w)
		}
	}
	fi, err := os.Stat(filepath.Join(out, "by-root"))
	if err != nil {
		t.Fatalf("the container's file: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 100000 || st.Gid != 200000 {
		t.Errorf("a file the container's root made is owned by %d:%d, want the mapped 100000:200000", st.Uid, st.Gid)
	}
	// The root's bind mount goes with the container.
	if _, err := e.a.Svc.RemoveContainer(e.ctx(15*time.Second), &pb.RemoveContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", e.a.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mi), id) {
		t.Errorf("a mount of %s is left in the agent's mount namespace:\n%s", id, mi)
	}
}
