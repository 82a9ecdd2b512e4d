package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
)

// fakeContainer records container id under root as kept by process pid
// (which runs), with status and the VM of container sandbox.
func fakeContainer(t *testing.T, root, id string, pid int, status, sandbox, netns string) {
	t.Helper()
	start, err := proc.StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(containerDir(root, id), 0o700); err != nil {
		t.Fatal(err)
	}
	st := &containerState{ID: id, Status: status, OwnerPid: pid, OwnerStart: start, Sandbox: sandbox, NetNS: netns}
	if err := st.save(root); err != nil {
		t.Fatal(err)
	}
}

// TestVMToJoin: a namespace path naming the owner of a container under
// the root joins that container's VM (or the VM that container joined);
// a path of any other process does not; conflicting paths are refused
// naming the field.
func TestVMToJoin(t *testing.T) {
	root := t.TempDir()
	// Owners: this process, its parent and three children.
	var pids []int
	for range 3 {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	self := os.Getpid()
	netns := filepath.Join(t.TempDir(), "netns") // a file standing for a namespace
	if err := os.WriteFile(netns, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fakeContainer(t, root, "infra", self, statusRunning, "", netns)
	fakeContainer(t, root, "member", pids[0], statusRunning, "infra", "")
	fakeContainer(t, root, "other", pids[1], statusRunning, "", "")
	fakeContainer(t, root, "done", pids[2], statusStopped, "", "")
	fakeContainer(t, root, "booting", os.Getppid(), statusCreating, "", "")

	ns := func(typ specs.LinuxNamespaceType, path string) specs.LinuxNamespace {
		return specs.LinuxNamespace{Type: typ, Path: path}
	}
	nsOf := func(pid int, typ string) string { return fmt.Sprintf("/proc/%d/ns/%s", pid, typ) }
	for _, c := range []struct {
		name string
		ns   []specs.LinuxNamespace
		want string
		err  string
	}{
		{"no paths", []specs.LinuxNamespace{ns(specs.NetworkNamespace, ""), ns(specs.IPCNamespace, "")}, "", ""},
		{"netns path", []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/run/netns/x")}, "", ""},
		{"not a container's process", []specs.LinuxNamespace{ns(specs.NetworkNamespace, nsOf(1, "net"))}, "", ""},
		{"podman pod", []specs.LinuxNamespace{ns(specs.PIDNamespace, ""), ns(specs.NetworkNamespace, nsOf(self, "net")),
			ns(specs.IPCNamespace, nsOf(self, "ipc")), ns(specs.UTSNamespace, nsOf(self, "uts"))}, "infra", ""},
		{"task path", []specs.LinuxNamespace{ns(specs.IPCNamespace, fmt.Sprintf("/proc/%d/task/%d/ns/ipc", self, self))}, "infra", ""},
		{"through a member", []specs.LinuxNamespace{ns(specs.IPCNamespace, nsOf(pids[0], "ipc"))}, "infra", ""},
		{"the VM's netns by path", []specs.LinuxNamespace{ns(specs.NetworkNamespace, netns), ns(specs.IPCNamespace, nsOf(self, "ipc"))}, "infra", ""},
		{"two VMs", []specs.LinuxNamespace{ns(specs.NetworkNamespace, nsOf(self, "net")), ns(specs.IPCNamespace, nsOf(pids[1], "ipc"))}, "",
			"linux.namespaces[1].path /proc/" + fmt.Sprint(pids[1]) + "/ns/ipc is in the VM of container other, linux.namespaces[0].path"},
		{"stopped", []specs.LinuxNamespace{ns(specs.IPCNamespace, nsOf(pids[2], "ipc"))}, "",
			"linux.namespaces[0].path /proc/" + fmt.Sprint(pids[2]) + "/ns/ipc: container done, whose process it is, has stopped"},
		{"being created", []specs.LinuxNamespace{ns(specs.IPCNamespace, nsOf(os.Getppid(), "ipc"))}, "",
			"container booting, whose process it is, is being created"},
		{"another network", []specs.LinuxNamespace{ns(specs.NetworkNamespace, "/run/netns/x"), ns(specs.IPCNamespace, nsOf(self, "ipc"))}, "",
			"linux.namespaces[0].path /run/netns/x: not the network of container infra's VM"},
	} {
		got, err := vmToJoin(root, &specs.Spec{Linux: &specs.Linux{Namespaces: c.ns}})
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q, %v; want an error with %q", c.name, got, err, c.err)
		}
	}
	if got, err := vmToJoin(root, &specs.Spec{}); got != "" || err != nil {
		t.Errorf("no linux section: %q, %v", got, err)
	}
}

// TestHostTTY: output to the host terminal goes through unprocessed even
// after its holder turned output processing on (conmon sets ONLCR).
func TestHostTTY(t *testing.T) {
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag |= unix.OPOST | unix.ONLCR
	if err := unix.IoctlSetTermios(int(master.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	if _, err := (hostTTY{slave}).Write([]byte("a\r\nb\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := master.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != "a\r\nb\n" {
		t.Errorf("through the host terminal: %q, want %q unchanged", got, "a\r\nb\n")
	}
}
