package hostcgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The test binary is its own child: with childEnv set it touches 32 MiB,
// spins a little, says "ready" and sleeps.
const childEnv = "HOSTCGROUP_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		b := make([]byte, 32<<20)
		for i := range b {
			b[i] = byte(i)
		}
		for t := time.Now(); time.Since(t) < 50*time.Millisecond; {
		}
		fmt.Println("ready", b[12345])
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Account, "off": Off, "account": Account, "all": All} {
		got, err := ParseMode("vm_cgroup", in)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseMode("vm_cgroup", "cpu")
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `vm_cgroup "cpu"`) {
		t.Errorf("ParseMode(cpu) = %v; want an invalid argument naming vm_cgroup", err)
	}
}

func TestResolvePath(t *testing.T) {
	for in, want := range map[string]string{
		"/kubepods/burstable/pod1/abc": "/kubepods/burstable/pod1/abc",
		"kubepods/pod1/abc":            "/kubepods/pod1/abc",
		"/a/../b/":                     "/b",
		"kubepods-burstable-pod1.slice:cri-containerd:abc": "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope",
		"machine.slice:libpod:abc":                         "/machine.slice/libpod-abc.scope",
		":vc:abc":                                          "/system.slice/vc-abc.scope",
		"user.slice:libpod:x.slice":                        "/user.slice/libpod-x.slice",
	} {
		got, err := ResolvePath(in)
		if err != nil || got != want {
			t.Errorf("ResolvePath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/", "bad--name.slice:p:n", "noslice:p:n"} {
		if _, err := ResolvePath(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ResolvePath(%q) = %v; want invalid argument", bad, err)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes host cgroups")
	}
}

// startIn starts cmd in c as the qemu driver does: on a locked thread
// that runs enter, forks, runs leave and ends. It returns the cgroups
// the thread was in before and after (v1), to check it left.
func startIn(t *testing.T, c *Cgroup, cmd *exec.Cmd) (before, after string) {
	t.Helper()
	enter, leave, err := c.Prepare(cmd)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends here
		before = readSelfThreadCgroup()
		if enter != nil {
			if err := enter(); err != nil {
				errc <- err
				return
			}
		}
		err := cmd.Start()
		if leave != nil {
			leave()
		}
		after = readSelfThreadCgroup()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return before, after
}

func readSelfThreadCgroup() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/cgroup", unix.Gettid()))
	return string(b)
}

// cgroupOf is pid's cgroup in the hierarchy of controller (v1), or its
// v2 cgroup.
func cgroupOf(t *testing.T, pid int, controller string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if IsV2() && f[0] == "0" {
			return f[2]
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == controller {
				return f[2]
			}
		}
	}
	t.Fatalf("pid %d: no %s cgroup in %q", pid, controller, b)
	return ""
}

func readInt(t *testing.T, file string) int64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func child(t *testing.T) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out)
}

func waitReady(t *testing.T, r *bufio.Reader) {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready") {
		t.Fatalf("child: %q, %v", line, err)
	}
}

// A parent of the test's own (as a pod's cgroup is the kubelet's), the
// sandbox's cgroup made below it, a real process started in it from its
// first instruction, its memory and CPU counted there (and in the
// parent), the cgroup removed once the process is gone, the parent kept.
func TestCreatePlaceRemove(t *testing.T) {
	needRoot(t)
	for _, mode := range []Mode{Account, All} {
		t.Run(string(mode), func(t *testing.T) {
			parent := fmt.Sprintf("/vc-hostcgroup-test-%d-%s", os.Getpid(), mode)
			path := parent + "/sandbox"
			c, err := Create(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			parentDirs := func() []string {
				var ds []string
				for _, d := range c.Dirs() {
					ds = append(ds, filepath.Dir(d))
				}
				return ds
			}()
			t.Cleanup(func() {
				for _, d := range parentDirs {
					unix.Rmdir(d)
				}
			})
			if _, err := Create(path, mode); !errdefs.IsAlreadyExists(err) {
				t.Errorf("Create twice: %v; want already exists", err)
			}
			wantHier := 3 // cpuacct, memory, pids
			if mode == All {
				wantHier = 4
			}
			if IsV2() {
				wantHier = 1
			}
			if !IsV2() && sameHierarchy("cpu", "cpuacct") {
				wantHier = 3
			}
			if got := len(c.Dirs()); got != wantHier {
				t.Errorf("mode %s: %d directories %v; want %d", mode, got, c.Dirs(), wantHier)
			}

			cmd, out := child(t)
			before, after := startIn(t, c, cmd)
			pid := cmd.Process.Pid
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			waitReady(t, out)
			for _, ctl := range mode.controllers() {
				if got := cgroupOf(t, pid, ctl); got != path {
					t.Errorf("child's %s cgroup %q; want %q", ctl, got, path)
				}
			}
			if !IsV2() {
				if before != after {
					t.Errorf("the forking thread did not return to its cgroups:\nbefore %s\nafter  %s", before, after)
				}
				if got := cgroupOf(t, os.Getpid(), "memory"); got == path {
					t.Errorf("the test process itself is in %s", path)
				}
				if mode == Account && !sameHierarchy("cpu", "cpuacct") {
					if got := cgroupOf(t, pid, "cpu"); got == path {
						t.Errorf("mode account: the child is in the cpu hierarchy's %s", got)
					}
				}
				mem := filepath.Join(Root, "memory", path, "memory.usage_in_bytes")
				if got := readInt(t, mem); got < 32<<20 {
					t.Errorf("memory.usage_in_bytes %d: want at least the child's 32 MiB", got)
				}
				if got := readInt(t, filepath.Join(Root, "memory", parent, "memory.usage_in_bytes")); got < 32<<20 {
					t.Errorf("the parent's memory.usage_in_bytes %d: want at least the child's 32 MiB", got)
				}
				if got := readInt(t, filepath.Join(Root, "cpuacct", path, "cpuacct.usage")); got < int64(20*time.Millisecond) {
					t.Errorf("cpuacct.usage %d ns: want at least the child's 50 ms spin (20 ms)", got)
				}
				if got := readInt(t, filepath.Join(Root, "pids", path, "pids.current")); got < 1 {
					t.Errorf("pids.current %d", got)
				}
			}
			pids, err := c.Pids()
			if err != nil || len(pids) != 1 || pids[0] != pid {
				t.Errorf("Pids() = %v, %v; want [%d]", pids, err, pid)
			}

			// Not removable while the process is in it: the error says so.
			RemoveTimeout = 100 * time.Millisecond
			defer func() { RemoveTimeout = 5 * time.Second }()
			if err := c.Remove(); err == nil || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
				t.Errorf("Remove with a process in it: %v; want an error naming %d", err, pid)
			}
			cmd.Process.Kill()
			cmd.Wait()
			RemoveTimeout = 5 * time.Second
			if err := Remove(path, mode); err != nil {
				t.Fatal(err)
			}
			for _, d := range c.Dirs() {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left: %v", d, err)
				}
			}
			for _, d := range parentDirs {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("the parent %s went: %v", d, err)
				}
			}
			if err := c.Remove(); err != nil {
				t.Errorf("Remove again: %v; want nil", err)
			}
		})
	}
}

// A running process (a VM from a factory's cache) moved in, all threads.
func TestMove(t *testing.T) {
	needRoot(t)
	path := fmt.Sprintf("/vc-hostcgroup-test-move-%d", os.Getpid())
	c, err := Create(path, Account)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	cmd, out := child(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitReady(t, out)
	pid := cmd.Process.Pid
	if got := cgroupOf(t, pid, "memory"); got == path {
		t.Fatalf("child in %s before the move", got)
	}
	if err := c.Move(pid); err != nil {
		t.Fatal(err)
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if len(tasks) < 2 {
		t.Fatalf("child has %d threads; want a Go program's several", len(tasks))
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/cgroup", pid, task.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "memory:"+path+"\n") && !strings.Contains(string(b), "0::"+path+"\n") {
			t.Errorf("thread %s not moved: %s", task.Name(), b)
		}
	}
}

func sameHierarchy(a, b string) bool {
	ra, err1 := filepath.EvalSymlinks(filepath.Join(Root, a))
	rb, err2 := filepath.EvalSymlinks(filepath.Join(Root, b))
	return err1 == nil && err2 == nil && ra == rb
}
