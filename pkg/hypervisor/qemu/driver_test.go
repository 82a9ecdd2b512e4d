package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// The driver finds a VM by its state directory only when the pid file's
// process names that directory (not a reused pid), and Kill ends it.
func TestDriverRunningPidKill(t *testing.T) {
	d, err := hypervisor.Templates(backendName)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if pid := d.RunningPid(dir); pid != 0 {
		t.Fatalf("no pid file: pid %d", pid)
	}
	// This test's own pid: its command line does not name dir.
	os.WriteFile(filepath.Join(dir, pidFileName), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	if pid := d.RunningPid(dir); pid != 0 {
		t.Fatalf("a process not naming the directory: pid %d", pid)
	}
	cmd := exec.Command("sleep", "600", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill() })
	os.WriteFile(filepath.Join(dir, pidFileName), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	if pid := d.RunningPid(dir); pid != cmd.Process.Pid {
		t.Fatalf("RunningPid = %d, want %d", pid, cmd.Process.Pid)
	}
	d.Kill(dir)
	<-exited
	if pid := d.RunningPid(dir); pid != 0 {
		t.Fatalf("after Kill: pid %d", pid)
	}
	bin, fw, err := d.HostFiles(hypervisor.Config{HypervisorPath: "/bin/true"})
	if err != nil || bin != "/bin/true" {
		t.Errorf("HostFiles = %q, %q, %v", bin, fw, err)
	}
	if _, _, err := d.HostFiles(hypervisor.Config{HypervisorPath: "/nonexistent/qemu"}); err == nil {
		t.Errorf("HostFiles of a missing binary: no error")
	}
}
