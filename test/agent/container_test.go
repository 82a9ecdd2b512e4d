package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestContainerLifecycle runs two containers side by side through
// create, start, wait and remove.
func TestContainerLifecycle(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	cases := []struct {
		name   string
		script string
		status int32
		stdout string
		stderr string
	}{
		{"zero", "echo out-zero; echo err-zero >&2", 0, "out-zero\n", "err-zero\n"},
		{"three", "echo out-three; hostname; exit 3", 3, "out-three\nctr\n", ""},
	}
	ids := make([]string, len(cases))
	for i, c := range cases {
		ids[i] = newID(c.name)
		e.create(ids[i], spec(rootfs, "sh", "-c", c.script))
		st, err := e.a.Svc.StatsContainer(e.ctx(10e9), &pb.StatsContainerRequest{ContainerId: ids[i]})
		if err != nil {
			t.Fatalf("stats of created container: %v", err)
		}
		// Its init waits to be started (pids counts its threads).
		if st.CgroupStats.GetPidsStats().GetCurrent() == 0 {
			t.Errorf("created container has no task in its cgroup")
		}
	}
	for i := range cases {
		e.start(ids[i])
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := ids[i]
			if got := e.readAll(id, "", false); got != c.stdout {
				t.Errorf("stdout %q, want %q", got, c.stdout)
			}
			if got := e.readAll(id, id, true); got != c.stderr {
				t.Errorf("stderr %q, want %q", got, c.stderr)
			}
			if got := e.wait(id, ""); got != c.status {
				t.Errorf("status %d, want %d", got, c.status)
			}
			// A second waiter gets the same status.
			if got := e.wait(id, id); got != c.status {
				t.Errorf("second wait: status %d, want %d", got, c.status)
			}
			if _, err := e.a.Svc.RemoveContainer(e.ctx(10e9), &pb.RemoveContainerRequest{ContainerId: id}); err != nil {
				t.Fatalf("remove: %v", err)
			}
			for _, ctrl := range []string{"memory", "pids", "freezer"} {
				if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctrl, "vc", id)); !os.IsNotExist(err) {
					t.Errorf("%s cgroup still there after remove (%v)", ctrl, err)
				}
			}
			_, err := e.a.Svc.WaitProcess(e.ctx(10e9), &pb.WaitProcessRequest{ContainerId: id})
			wantCode(t, "wait after remove", err, codes.NotFound, "container_id")
		})
	}
}

// TestRemoveUnstarted removes a container that was never started.
func TestRemoveUnstarted(t *testing.T) {
	e := newEnv(t)
	id := newID("unstarted")
	e.create(id, spec(testutil.BusyboxRootfs(t), "sh", "-c", "echo never"))
	if _, err := e.a.Svc.RemoveContainer(e.ctx(10e9), &pb.RemoveContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory/vc", id)); !os.IsNotExist(err) {
		t.Errorf("cgroup still there after remove (%v)", err)
	}
	_, err := e.a.Svc.StartContainer(e.ctx(10e9), &pb.StartContainerRequest{ContainerId: id})
	wantCode(t, "start after remove", err, codes.NotFound, "container_id")
}

func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	cases := []struct {
		name   string
		script string
		kill   bool // SIGKILL it with SignalProcess
		want   int32
	}{
		{"zero", "exit 0", false, 0},
		{"three", "exit 3", false, 3},
		// A PID namespace's init cannot SIGKILL itself: that container
		// shares the agent's PID namespace.
		{"kill-self", "kill -9 $$", false, 137},
		{"signal-process", "echo ready; sleep 1000", true, 137},
	}
	id := newID("exitcodes")
	e.run(id, spec(rootfs, "sleep", "1000"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Exec'd processes, and containers' init.
			e.exec(id, c.name, false, "sh", "-c", c.script)
			cid := newID(c.name)
			s := spec(rootfs, "sh", "-c", c.script)
			if c.name == "kill-self" {
				s.Linux.Namespaces = s.Linux.Namespaces[1:]
			}
			e.run(cid, s)
			if c.kill {
				e.readUntil(id, c.name, "ready")
				e.signal(id, c.name, 9)
				e.readUntil(cid, "", "ready")
				e.signal(cid, "", 9)
			}
			if got := e.wait(id, c.name); got != c.want {
				t.Errorf("exec: status %d, want %d", got, c.want)
			}
			if got := e.wait(cid, ""); got != c.want {
				t.Errorf("init: status %d, want %d", got, c.want)
			}
		})
	}
}

// TestFastExit: a process that writes a lot and exits at once loses none
// of its output, read only after it has exited.
func TestFastExit(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	const size = 100 << 10
	script := fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x; head -c 1000 /dev/zero | tr '\\0' y >&2", size)
	id := newID("fast")
	e.run(id, spec(rootfs, "sh", "-c", script))
	if st := e.wait(id, ""); st != 0 {
		t.Fatalf("status %d", st)
	}
	out := e.readAll(id, "", false)
	if len(out) != size || strings.Trim(out, "x") != "" {
		t.Errorf("init stdout: %d bytes (want %d x's)", len(out), size)
	}
	if errOut := e.readAll(id, "", true); errOut != strings.Repeat("y", 1000) {
		t.Errorf("init stderr: %d bytes, want 1000 y's", len(errOut))
	}

	for _, terminal := range []bool{false, true} {
		t.Run(fmt.Sprintf("exec-terminal=%v", terminal), func(t *testing.T) {
			cid := newID("fastexec")
			e.run(cid, spec(rootfs, "sleep", "1000"))
			e.exec(cid, "burst", terminal, "sh", "-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' x", size))
			if st := e.wait(cid, "burst"); st != 0 {
				t.Fatalf("status %d", st)
			}
			out := e.readAll(cid, "burst", false)
			if len(out) != size || strings.Trim(out, "x") != "" {
				t.Errorf("stdout: %d bytes (want %d x's)", len(out), size)
			}
		})
	}
}
