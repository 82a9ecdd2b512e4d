package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// isolateHost gives the calling test's thread (and so the agent it
// starts) a UTS namespace of its own and a mount namespace where
// /etc/resolv.conf is a bind mount of a temporary file, whose path it
// returns: CreateSandbox sets the hostname and writes /etc/resolv.conf,
// which must not touch the host's. The thread stays locked and dies with
// the test.
func isolateHost(t *testing.T) string {
	t.Helper()
	runtime.LockOSThread()
	nsOf := func() map[string]string {
		m := map[string]string{}
		for _, ns := range []string{"uts", "mnt"} {
			l, err := os.Readlink("/proc/thread-self/ns/" + ns)
			if err != nil {
				t.Fatal(err)
			}
			m[ns] = l
		}
		return m
	}
	before := nsOf()
	if err := unix.Unshare(unix.CLONE_NEWUTS | unix.CLONE_NEWNS); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	after := nsOf()
	for ns := range before {
		if before[ns] == after[ns] {
			t.Fatalf("%s namespace not isolated: %s", ns, after[ns])
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatalf("make / private: %v", err)
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(resolv, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s on /etc/resolv.conf: %v", resolv, err)
	}
	return resolv
}

// TestSandbox creates a sandbox with a hostname, DNS and a shared PID
// namespace, runs containers in it and destroys it.
func TestSandbox(t *testing.T) {
	// The host's hostname, as seen from a thread other than the test's.
	hostname := func() string {
		ch := make(chan string)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			h, _ := os.Hostname()
			ch <- h
		}()
		return <-ch
	}
	hostHostname := hostname()
	resolv := isolateHost(t)
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	req := &pb.CreateSandboxRequest{
		SandboxId:    "sbx",
		Hostname:     "sbx-host",
		Dns:          []string{"nameserver 10.9.8.7", "10.9.8.6", "search example.test"},
		SandboxPidns: true,
	}
	if _, err := e.a.Svc.CreateSandbox(e.ctx(10*time.Second), req); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	_, err := e.a.Svc.CreateSandbox(e.ctx(10*time.Second), req)
	wantCode(t, "second CreateSandbox", err, codes.AlreadyExists, "sandbox")
	if h := hostname(); h != hostHostname {
		t.Fatalf("the host's hostname changed to %q", h)
	}
	b, err := os.ReadFile(resolv)
	if want := "nameserver 10.9.8.7\nnameserver 10.9.8.6\nsearch example.test\n"; string(b) != want || err != nil {
		t.Errorf("resolv.conf %q (%v), want %q", b, err, want)
	}

	// Containers in the sandbox's PID namespace see each other; PID 1 is
	// the pause process. A container without a UTS namespace has the
	// sandbox's hostname.
	a := newID("sbx-a")
	sa := spec(rootfs, "sh", "-c", "sleep 1001 & exec sleep 1000")
	e.create(a, sa)
	if _, err := e.a.Svc.CreateContainer(e.ctx(10*time.Second), &pb.CreateContainerRequest{ContainerId: a + "x", OCI: sa, SandboxPidns: true}); err != nil {
		t.Fatal(err)
	}
	e.ids = append(e.ids, a+"x")
	e.start(a + "x")
	look := func(id, execID string) string {
		e.exec(id, execID, false, "sh", "-c", "hostname; tr '\\0' ' ' </proc/1/cmdline; echo; ps -o args")
		out := e.readAll(id, execID, false)
		e.wait(id, execID)
		return out
	}
	b2 := newID("sbx-b")
	sb := spec(rootfs, "sleep", "1000")
	sb.Hostname = ""
	sb.Linux.Namespaces = []*pb.LinuxNamespace{{Type: "ipc"}, {Type: "mount"}}
	if _, err := e.a.Svc.CreateContainer(e.ctx(10*time.Second), &pb.CreateContainerRequest{ContainerId: b2, OCI: sb, SandboxPidns: true}); err != nil {
		t.Fatal(err)
	}
	e.ids = append(e.ids, b2)
	e.start(b2)
	out := look(b2, "look")
	for _, want := range []string{"sbx-host\n", "vc-agent pause \n", "sleep 1001", "sleep 1000"} {
		if !strings.Contains(out, want) {
			t.Errorf("in the shared PID namespace: %q lacks %q", out, want)
		}
	}

	// When a container's init dies, what it left in the shared namespace
	// is killed.
	e.signal(a+"x", a+"x", 9)
	if st := e.wait(a+"x", ""); st != 137 {
		t.Errorf("status %d", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		out = look(b2, "look"+strconv.Itoa(i))
		if !strings.Contains(out, "sleep 1001") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead init's child survives: %q", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// a, outside the sandbox's PID namespace, is still there.
	e.start(a)

	// DestroySandbox removes everything and shuts the agent down.
	if _, err := e.a.Svc.DestroySandbox(e.ctx(30*time.Second), &pb.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	select {
	case <-e.a.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("agent still running after DestroySandbox")
	}
	// e's cleanup checks that no cgroup is left.
}

// TestAgentRSS measures the agent's memory with a sandbox and one idle
// container.
func TestAgentRSS(t *testing.T) {
	e := newEnv(t)
	if _, err := e.a.Svc.CreateSandbox(e.ctx(10*time.Second), &pb.CreateSandboxRequest{SandboxId: "rss", SandboxPidns: true}); err != nil {
		t.Fatal(err)
	}
	id := newID("idle")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sleep", "1000"))
	e.exec(id, "probe", false, "true")
	e.wait(id, "probe")
	time.Sleep(200 * time.Millisecond)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.a.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var kib int
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, _ = strconv.Atoi(f[1])
		}
	}
	if kib == 0 {
		t.Fatalf("no VmRSS in %s", b)
	}
	t.Logf("agent RSS: %d KiB", kib)
	if kib > 40<<10 {
		t.Errorf("agent RSS %d KiB is above 40 MiB", kib)
	}
}
