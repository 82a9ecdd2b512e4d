package agent_test

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestCgroupNamespace: a container whose spec asks for a cgroup namespace
// and mounts "cgroup" on /sys/fs/cgroup sees its own cgroup as the root
// there, with its memory limit, and as "/" in /proc/self/cgroup. Without
// one in the spec it gets one on cgroup v2 (the guest's), and the
// runtime's (the agent's) on v1, where containerd, docker and runc do not
// make one either. The host's cgroup version decides what is checked.
func TestCgroupNamespace(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatal(err)
	}
	v2 := st.Type == unix.CGROUP2_SUPER_MAGIC
	const limit = 64 << 20
	script := "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null; cat /proc/self/cgroup"
	for _, c := range []struct {
		name   string
		cgroup bool // in the spec
	}{{"in-spec", true}, {"default", false}} {
		t.Run(c.name, func(t *testing.T) {
			id := newID("cgns-" + c.name)
			s := spec(rootfs, "sh", "-c", script)
			s.Mounts = append(s.Mounts, &pb.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
			if c.cgroup {
				s.Linux.Namespaces = append(s.Linux.Namespaces, &pb.LinuxNamespace{Type: "cgroup"})
			}
			s.Linux.Resources.Memory = &pb.LinuxMemory{Limit: limit}
			e.run(id, s)
			out := e.readAll(id, "", false) + e.readAll(id, "", true)
			if code := e.wait(id, ""); code != 0 {
				t.Errorf("exit status %d: %q", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if lines[0] != "67108864" {
				t.Errorf("the memory limit at the root of /sys/fs/cgroup: %q, want 67108864 (output %q)", lines[0], out)
			}
			want := "memory:/"
			if v2 {
				want = "0::/"
			}
			if !c.cgroup && !v2 {
				// The agent's namespace: the cgroup's full path.
				want = "memory:/vc/" + id
			}
			found := false
			for _, l := range lines[1:] {
				found = found || strings.HasSuffix(l, ":"+want) || l == want
			}
			if !found {
				t.Errorf("/proc/self/cgroup %q has no line ending in %q", lines[1:], want)
			}
		})
	}
}
