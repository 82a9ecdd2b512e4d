package agent_test

import (
	"strings"
	"testing"
	"time"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestSpec checks that the parts of the OCI spec reach the container.
func TestSpec(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	cases := []struct {
		name   string
		script string
		edit   func(s *pb.Spec)
		user   *pb.StringUser
		want   []string // substrings of stdout+stderr
	}{
		{"user", "id", func(s *pb.Spec) {
			s.Process.User = &pb.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{7}}
		}, nil, []string{"uid=65534(nobody) gid=65534(nogroup) groups=7"}},
		{"string-user", "id", nil, &pb.StringUser{Uid: "nobody", AdditionalGids: []string{"root"}},
			[]string{"uid=65534(nobody) gid=65534(nogroup)", "groups=0(root)"}},
		{"env-cwd", "echo $FOO; pwd", func(s *pb.Spec) {
			s.Process.Env = append(s.Process.Env, "FOO=bar")
			s.Process.Cwd = "/tmp"
		}, nil, []string{"bar\n/tmp\n"}},
		{"rlimit", "ulimit -n", func(s *pb.Spec) {
			s.Process.Rlimits = []*pb.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 77, Soft: 77}}
		}, nil, []string{"77"}},
		{"capabilities", "grep CapEff /proc/self/status", func(s *pb.Spec) {
			caps := []string{"CAP_KILL"}
			s.Process.Capabilities = &pb.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
		}, nil, []string{"CapEff:\t0000000000000020"}},
		{"oom-score-adj", "cat /proc/self/oom_score_adj", func(s *pb.Spec) {
			s.Process.OOMScoreAdj = 432
		}, nil, []string{"432"}},
		{"readonly-rootfs", "touch /etc/x 2>&1; echo rc=$?", func(s *pb.Spec) {
			s.Root.Readonly = true
		}, nil, []string{"Read-only file system", "rc=1"}},
		{"masked-path", "cat /proc/timer_list | wc -c; cat /proc/keys | wc -c", nil, nil, []string{"0\n0\n"}},
		{"readonly-path", "echo 1 > /proc/sys/kernel/ns_last_pid 2>&1; echo rc=$?", nil, nil, []string{"rc=1"}},
		{"hostname", "hostname", func(s *pb.Spec) { s.Hostname = "spec-host" }, nil, []string{"spec-host"}},
		{"sysctl", "cat /proc/sys/kernel/shm_rmid_forced", func(s *pb.Spec) {
			s.Linux.Sysctl = map[string]string{"kernel.shm_rmid_forced": "1"}
		}, nil, []string{"1"}},
		{"seccomp", "mkdir /tmp/denied 2>&1; echo rc=$?", func(s *pb.Spec) {
			s.Linux.Seccomp = &pb.LinuxSeccomp{
				DefaultAction: "SCMP_ACT_ALLOW",
				Architectures: []string{"SCMP_ARCH_X86_64"},
				Syscalls: []*pb.LinuxSyscall{{
					Names: []string{"mkdir", "mkdirat"}, Action: "SCMP_ACT_ERRNO",
					ErrnoRet: &pb.LinuxSyscall_Errnoret{Errnoret: 13},
				}},
			}
		}, nil, []string{"Permission denied", "rc=1"}},
		{"devices", "echo hi 2>&1 >/dev/full; echo rc=$?; head -c 3 /dev/zero | wc -c", nil, nil, []string{"No space left on device", "3"}},
		// The device cgroup denies all but libcontainer's defaults
		// (/dev/urandom is one, /dev/kmsg is not).
		{"device-cgroup-allowed", "head -c 1 /dev/urandom >/dev/null 2>&1; echo rc=$?", nil, nil, []string{"rc=0"}},
		{"device-cgroup-denied", "head -c 1 /dev/kmsg >/dev/null 2>&1; echo rc=$?", func(s *pb.Spec) {
			s.Mounts = append(s.Mounts, &pb.Mount{Destination: "/dev/kmsg", Source: "/dev/kmsg", Type: "bind", Options: []string{"bind"}})
		}, nil, []string{"rc=1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := newID(c.name)
			s := spec(rootfs, "sh", "-c", c.script)
			if c.edit != nil {
				c.edit(s)
			}
			if err := e.tryCreate(&pb.CreateContainerRequest{ContainerId: id, OCI: s, StringUser: c.user}); err != nil {
				t.Fatalf("create: %v", err)
			}
			e.start(id)
			out := e.readAll(id, "", false) + e.readAll(id, "", true)
			e.wait(id, "")
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}

	t.Run("exec-string-user", func(t *testing.T) {
		id := newID("execuser")
		e.run(id, spec(rootfs, "sleep", "1000"))
		_, err := e.a.Svc.ExecProcess(e.ctx(10*time.Second), &pb.ExecProcessRequest{
			ContainerId: id, ExecId: "id",
			StringUser: &pb.StringUser{Uid: "nobody", Gid: "root"},
			Process:    &pb.Process{Args: []string{"id"}, Env: []string{pathEnv}, Cwd: "/"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if out := e.readAll(id, "id", false); !strings.HasPrefix(out, "uid=65534(nobody) gid=0(root)") {
			t.Errorf("id printed %q", out)
		}
	})
}
