package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunPrintsGuestKernel(t *testing.T) {
	host, _ := exec.Command("uname", "-r").Output()
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--name", "e2e-uname", "busybox", "--", "uname", "-r")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	guest := strings.TrimSpace(out)
	if guest == "" || guest == strings.TrimSpace(string(host)) {
		t.Fatalf("guest kernel %q, host kernel %q: want a different, non-empty release", guest, host)
	}
	if !strings.Contains(kernel, guest) && !strings.Contains(guest, "amd64") {
		t.Logf("guest kernel %q (image kernel %s)", guest, kernel)
	}
	noLeftovers(t, "e2e-uname")
}

func TestRunExitCode(t *testing.T) {
	_, errOut, code := vcRun(t, nil, "run", "--rm", "--name", "e2e-exit7", "busybox", "--", "sh", "-c", "exit 7")
	if code != 7 {
		t.Fatalf("exit code %d, want 7; stderr: %s", code, errOut)
	}
	noLeftovers(t, "e2e-exit7")
}

func TestRunStdin(t *testing.T) {
	in := "hello from the host\nline two\n"
	out, errOut, code := vcRun(t, []byte(in), "run", "--rm", "-i", "--name", "e2e-stdin", "busybox", "--", "cat")
	if code != 0 || out != in {
		t.Fatalf("exit %d, stdout %q, want %q; stderr: %s", code, out, in, errOut)
	}
}

func TestReadOnlyVolume(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "seen"), []byte("from host\n"), 0o644)
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--name", "e2e-ro", "-v", dir+":/data:ro", "busybox", "--",
		"sh", "-c", "cat /data/seen; echo x > /data/written && echo WROTE")
	if !strings.Contains(out, "from host") {
		t.Fatalf("volume content not visible: stdout %q stderr %q", out, errOut)
	}
	if code == 0 || strings.Contains(out, "WROTE") {
		t.Fatalf("write to a read-only volume succeeded: exit %d stdout %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "written")); err == nil {
		t.Fatal("file written through a read-only volume exists on the host")
	}
	// And a writable one writes through to the host.
	_, errOut, code = vcRun(t, nil, "run", "--rm", "--name", "e2e-rw", "-v", dir+":/data", "busybox", "--", "sh", "-c", "echo guest > /data/written")
	b, _ := os.ReadFile(filepath.Join(dir, "written"))
	if code != 0 || string(b) != "guest\n" {
		t.Fatalf("rw volume: exit %d, host file %q, stderr %s", code, b, errOut)
	}
}

func TestDetachedStopRemove(t *testing.T) {
	id := "e2e-detached"
	out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sh", "-c", "echo started; sleep 1000")
	if code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	out, _, _ = vcRun(t, nil, "ps")
	if !strings.Contains(out, id) || !strings.Contains(out, "running") {
		t.Fatalf("ps does not show %s running:\n%s", id, out)
	}
	out, errOut, code = vcRun(t, nil, "exec", id, "cat", "/proc/sys/kernel/random/boot_id")
	if code != 0 || len(strings.TrimSpace(out)) != 36 {
		t.Fatalf("exec: exit %d stdout %q stderr %q", code, out, errOut)
	}
	waitFor(t, func() bool { o, _, _ := vcRun(t, nil, "logs", id); return strings.Contains(o, "started") }, "logs show output")
	if _, errOut, code = vcRun(t, nil, "rm", id); code == 0 {
		t.Fatalf("rm of a running container succeeded")
	}
	if _, errOut, code = vcRun(t, nil, "stop", "-t", "2", id); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	if _, errOut, code = vcRun(t, nil, "rm", id); code != 0 {
		t.Fatalf("rm: exit %d: %s", code, errOut)
	}
	noLeftovers(t, id)
}

func TestKilledVMReportsStopped(t *testing.T) {
	id := "e2e-killed"
	if _, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sleep", "1000"); code != 0 {
		t.Fatalf("run -d: %s", errOut)
	}
	out, err := exec.Command("pgrep", "-f", "qemu-system.*"+id).Output()
	if err != nil {
		t.Fatalf("no qemu process for %s", id)
	}
	for _, p := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(p); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	waitFor(t, func() bool {
		o, _, _ := vcRun(t, nil, "inspect", id)
		return strings.Contains(o, `"state": "stopped"`)
	}, "sandbox reported stopped after its QEMU was killed")
	if _, errOut, code := vcRun(t, nil, "rm", id); code != 0 {
		t.Fatalf("rm after crash: %s", errOut)
	}
	noLeftovers(t, id)
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing rootfs", []string{"run", "--rm", "--name", "e2e-bad1", "--rootfs", "/nonexistent/rootfs", "--", "true"}, "/nonexistent/rootfs"},
		{"unknown image", []string{"run", "--rm", "--name", "e2e-bad2", "nosuchimage", "--", "true"}, "nosuchimage"},
		{"command not found", []string{"run", "--rm", "--name", "e2e-bad3", "busybox", "--", "/no/such/command"}, "/no/such/command"},
		{"memory below minimum", []string{"run", "--rm", "--name", "e2e-bad4", "--memory", "16M", "busybox", "--", "true"}, "memory"},
		{"kernel missing", []string{"run", "--rm", "--name", "e2e-bad5", "--kernel", "/nonexistent/vmlinuz", "--initrd", "/nonexistent/initrd", "busybox", "--", "true"}, "/nonexistent/vmlinuz"},
		{"qemu dies during boot", []string{"run", "--rm", "--name", "e2e-bad6", "--kernel", "/etc/hostname", "--initrd", "/etc/hostname", "busybox", "--", "true"}, "console"},
		{"unknown sandbox (exec)", []string{"exec", "e2e-nosuch", "true"}, "e2e-nosuch"},
		{"unknown sandbox (stop)", []string{"stop", "e2e-nosuch"}, "e2e-nosuch"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := vcRun(t, nil, c.args...)
			if code == 0 {
				t.Fatalf("succeeded")
			}
			if !strings.Contains(errOut, c.want) {
				t.Fatalf("error does not name %q:\n%s", c.want, errOut)
			}
			t.Logf("error: %s", strings.TrimSpace(errOut))
			noLeftovers(t, "e2e-bad"+string(rune('1'+i)))
		})
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
