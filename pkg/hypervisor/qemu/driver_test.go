package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// dir is $0 of a shell that stays (sleep 600 dir would refuse dir
	// as an interval and exit at once).
	cmd := exec.Command("sh", "-c", "while :; do sleep 1; done", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill() })
	os.WriteFile(filepath.Join(dir, pidFileName), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	// Until the child has exec'd sleep, its command line is the test's.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); strings.Contains(string(b), dir) {
			break
		}
	}
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
