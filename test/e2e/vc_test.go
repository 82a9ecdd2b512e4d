package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testenv"
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

// `vc run -d -t` runs the container with a terminal and nobody attached:
// its owner has no terminal of its own (it panicked on one), the output
// reaches the logs, and `vc stats` of it once stopped is an error, not a
// crash of a nil agent connection.
func TestDetachedTTY(t *testing.T) {
	id := "e2e-detached-tty"
	out, errOut, code := vcRun(t, nil, "run", "-d", "-t", "--name", id, "busybox", "--", "sh", "-c", "tty; echo tty-started; sleep 1000")
	if code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("run -d -t: exit %d stdout %q stderr %q", code, out, errOut)
	}
	waitFor(t, func() bool { o, _, _ := vcRun(t, nil, "logs", id); return strings.Contains(o, "tty-started") }, "logs show output")
	if o, _, _ := vcRun(t, nil, "logs", id); !strings.Contains(o, "/dev/pts/") {
		t.Errorf("the container has no terminal: logs %q", o)
	}
	if out, _, _ = vcRun(t, nil, "ps"); !strings.Contains(out, id) || !strings.Contains(out, "running") {
		t.Fatalf("ps does not show %s running:\n%s", id, out)
	}
	if _, errOut, code = vcRun(t, nil, "stop", "-t", "2", id); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	out, errOut, code = vcRun(t, nil, "stats", id)
	if code == 0 || strings.Contains(errOut, "panic") || !strings.Contains(errOut, id) {
		t.Errorf("stats of a stopped container: exit %d stdout %q stderr %q, want an error naming it", code, out, errOut)
	}
	if _, errOut, code = vcRun(t, nil, "rm", id); code != 0 {
		t.Fatalf("rm: exit %d: %s", code, errOut)
	}
	noLeftovers(t, id)
}

// A detached container that cannot start fails `vc run -d` with the
// reason and docker's exit code (it said only "exit status 127", with
// 125), and leaves nothing.
func TestDetachedStartError(t *testing.T) {
	id := "e2e-detached-noexec"
	_, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "/nonexistent")
	if code != 127 || !strings.Contains(errOut, `"/nonexistent"`) || !strings.Contains(errOut, "no such file or directory") {
		t.Errorf("run -d of a missing command: exit %d, stderr %q; want 127 and the reason", code, errOut)
	}
	noLeftovers(t, id)
}

// `vc run -d` hands its options to the owner whatever their size (they
// were one argument, capped at 128 KiB: 160 KiB of -e failed with
// "argument list too long"), and two racing `run -d --name X` do not
// share an owner log: the winner keeps its own, the loser leaves none.
func TestDetachedOptionsAndRace(t *testing.T) {
	id := "e2e-detached-big"
	args := []string{"run", "-d", "--name", id}
	val := strings.Repeat("x", 4000)
	for i := range 40 {
		args = append(args, "-e", fmt.Sprintf("BIG%d=%s", i, val))
	}
	args = append(args, "busybox", "--", "sh", "-c", "echo -n $BIG39 | wc -c; sleep 1000")
	type result struct {
		out, errOut string
		code        int
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			out, errOut, code := vcRun(t, nil, args...)
			results <- result{out, errOut, code}
		}()
	}
	a, b := <-results, <-results
	if a.code != 0 {
		a, b = b, a
	}
	if a.code != 0 || strings.TrimSpace(a.out) != id {
		t.Fatalf("run -d with 160 KiB of options: exit %d stdout %q stderr %q", a.code, a.out, a.errOut)
	}
	if b.code == 0 || !strings.Contains(b.errOut, id) {
		t.Errorf("the second run -d --name %s: exit %d stderr %q, want it refused", id, b.code, b.errOut)
	}
	waitFor(t, func() bool { o, _, _ := vcRun(t, nil, "logs", id); return strings.TrimSpace(o) != "" }, "the container's output")
	if out, _, _ := vcRun(t, nil, "logs", id); strings.TrimSpace(out) != "4000" {
		t.Errorf("logs %q, want the 40th variable's 4000 bytes", out)
	}
	if _, err := os.Stat(filepath.Join(stateRoot, id, "owner.log")); err != nil {
		t.Errorf("the winner's owner log: %v", err)
	}
	if stray, _ := filepath.Glob(filepath.Join(stateRoot, ".*owner*")); len(stray) != 0 {
		t.Errorf("owner logs left in the state root: %v", stray)
	}
	if _, errOut, code := vcRun(t, nil, "rm", "-f", id); code != 0 {
		t.Fatalf("rm -f: exit %d: %s", code, errOut)
	}
	noLeftovers(t, id)
}

// Every container of an image writes into a layer of its own: a file one
// writes is not seen by the next, and neither the files nor the mount
// points of -v and -w reach the image, which every container shares
// (the library's own tests write into it, so only names of this test's
// own are checked). rm removes the layer.
func TestContainerLayer(t *testing.T) {
	image, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	id := "e2e-layer-a"
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--name", id, "-v", vol+":/layer-test-vol", "-w", "/layer-test-wd", "busybox", "--",
		"sh", "-c", "echo mine > /layer-test-file && cat /layer-test-file && pwd")
	if code != 0 || !strings.Contains(out, "mine") || !strings.Contains(out, "/layer-test-wd") {
		t.Fatalf("write into the layer: exit %d stdout %q stderr %q", code, out, errOut)
	}
	noLeftovers(t, id)
	out, errOut, code = vcRun(t, nil, "run", "--rm", "--name", "e2e-layer-b", "busybox", "--", "cat", "/layer-test-file")
	if code == 0 || strings.Contains(out, "mine") {
		t.Errorf("the next container sees the first one's file: exit %d stdout %q stderr %q", code, out, errOut)
	}
	for _, p := range []string{"layer-test-file", "layer-test-vol", "layer-test-wd"} {
		if _, err := os.Lstat(filepath.Join(image, p)); err == nil {
			t.Errorf("/%s reached the shared image %s", p, image)
		}
	}
	noLeftovers(t, "e2e-layer-b")
}

// docker's everyday flags of run and exec, in a VM: combined short flags,
// -e K (the host's value), --env-file, -u by name, --hostname,
// --read-only, --cap-drop/--cap-add, -w, --entrypoint; exec keeps the
// container's environment.
func TestRunDockerFlags(t *testing.T) {
	t.Setenv("VC_E2E_FROM_HOST", "host-value")
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# a comment\nFROM_FILE=file-value\n"), 0o600)
	id := "e2e-flags"
	script := `id -u; id -g; hostname; echo "$FROM_FILE $VC_E2E_FROM_HOST"; pwd; ` +
		`touch /probe 2>/dev/null && echo rw || echo ro; grep CapEff /proc/self/status`
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--name", id, "--env-file", envFile, "-e", "VC_E2E_FROM_HOST",
		"-u", "nobody", "--hostname", "flagged", "--read-only", "--cap-drop", "ALL", "--cap-add", "NET_RAW", "-w", "/tmp",
		"busybox", "--", "sh", "-c", script)
	// CAP_NET_RAW is bit 13: 0x2000. nobody's effective set is empty
	// (a non-root user keeps no capabilities without ambient ones), so the
	// bounding set is read from a root run below.
	want := []string{"65534", "65534", "flagged", "file-value host-value", "/tmp", "ro"}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < len(want) {
		t.Fatalf("run: exit %d stdout %q stderr %q", code, out, errOut)
	}
	for i, w := range want {
		if strings.TrimSpace(lines[i]) != w {
			t.Errorf("line %d: %q, want %q (stdout %q)", i+1, lines[i], w, out)
		}
	}
	out, errOut, code = vcRun(t, nil, "run", "--rm", "--name", id, "--cap-drop", "ALL", "--cap-add", "NET_RAW", "busybox", "--", "grep", "CapBnd", "/proc/self/status")
	if code != 0 || !strings.Contains(out, "0000000000002000") {
		t.Errorf("capabilities: exit %d stdout %q stderr %q, want only CAP_NET_RAW (0x2000)", code, out, errOut)
	}
	out, errOut, code = vcRun(t, nil, "run", "--rm", "--name", id, "--entrypoint", "echo", "busybox", "--", "from", "entrypoint")
	if code != 0 || strings.TrimSpace(out) != "from entrypoint" {
		t.Errorf("--entrypoint: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code = vcRun(t, nil, "run", "-dt", "--name", id, "-e", "APP=in-container", "-w", "/srv", "busybox", "--", "sleep", "1000"); code != 0 {
		t.Fatalf("run -dt: exit %d stdout %q stderr %q", code, out, errOut)
	}
	out, errOut, code = vcRun(t, nil, "exec", id, "sh", "-c", "echo $APP; pwd")
	if code != 0 || !strings.HasPrefix(out, "in-container\n") || !strings.Contains(out, "/srv") {
		t.Errorf("exec: exit %d stdout %q stderr %q, want the container's environment and working directory", code, out, errOut)
	}
	if _, errOut, code = vcRun(t, nil, "rm", "-f", id); code != 0 {
		t.Fatalf("rm -f: %s", errOut)
	}
	noLeftovers(t, id)
	if _, errOut, code = vcRun(t, nil, "run", "--rm", "--cap-add", "NOPE", "busybox", "true"); code != 125 || !strings.Contains(errOut, `--cap-add "NOPE"`) {
		t.Errorf("bad capability: exit %d stderr %q", code, errOut)
	}
}

// docker's everyday commands: top, pause/unpause, kill -s, wait (the
// container's exit code), rm -f of a missing name (exit 0), version.
func TestDockerCommands(t *testing.T) {
	id := "e2e-cmds"
	if out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sh", "-c", `trap "exit 7" TERM; while :; do sleep 1; done`); code != 0 {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := vcRun(t, nil, "top", id, "-o", "pid,args"); code != 0 || !strings.Contains(out, "sleep 1") {
		t.Errorf("top: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := vcRun(t, nil, "ps", "--format", "{{.Names}} {{.State}} {{.Image}}"); code != 0 || !strings.Contains(out, id+" running busybox\n") {
		t.Errorf("ps --format: exit %d stdout %q stderr %q", code, out, errOut)
	}
	// stats of every running container, once: this one among them.
	if out, errOut, code := vcRun(t, nil, "stats", "--no-stream"); code != 0 || !regexp.MustCompile(`(?m)^[0-9a-f]{12}\s+`+id+`\s+\d+\.\d\d%\s+\d+\.\d\ds\s+\S+ / \S+\s+\S+\s+\d+`).MatchString(out) {
		t.Errorf("stats --no-stream: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if _, errOut, code := vcRun(t, nil, "pause", id); code != 0 {
		t.Fatalf("pause: %s", errOut)
	}
	if out, _, _ := vcRun(t, nil, "ps"); !strings.Contains(out, "paused") {
		t.Errorf("ps after pause:\n%s", out)
	}
	if _, errOut, code := vcRun(t, nil, "pause", id); code == 0 || !strings.Contains(errOut, "paused") {
		t.Errorf("second pause: exit %d stderr %q, want it refused naming the state", code, errOut)
	}
	if _, errOut, code := vcRun(t, nil, "unpause", id); code != 0 {
		t.Fatalf("unpause: %s", errOut)
	}
	if _, errOut, code := vcRun(t, nil, "kill", "-s", "TERM", id); code != 0 {
		t.Fatalf("kill -s TERM: %s", errOut)
	}
	if out, errOut, code := vcRun(t, nil, "wait", id); code != 0 || strings.TrimSpace(out) != "7" {
		t.Errorf("wait: exit %d stdout %q stderr %q, want 7", code, out, errOut)
	}
	if _, errOut, code := vcRun(t, nil, "rm", id); code != 0 {
		t.Fatalf("rm: %s", errOut)
	}
	noLeftovers(t, id)
	if _, errOut, code := vcRun(t, nil, "rm", "-f", "e2e-never-was"); code != 0 {
		t.Errorf("rm -f of a missing name: exit %d stderr %q, want 0", code, errOut)
	}
	if _, _, code := vcRun(t, nil, "rm", "e2e-never-was"); code == 0 {
		t.Errorf("rm of a missing name succeeded")
	}
	if out, _, code := vcRun(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "vc version ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}

// vc logs keeps stdout and stderr apart, --tail and -t as docker's, and
// -f follows until the container stops.
func TestLogs(t *testing.T) {
	id := "e2e-logs"
	if out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sh", "-c",
		"echo out1; echo err1 >&2; echo out2; sleep 3; echo late"); code != 0 {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	waitFor(t, func() bool { o, _, _ := vcRun(t, nil, "logs", id); return strings.Contains(o, "out2") }, "the first lines")
	out, errOut, code := vcRun(t, nil, "logs", id)
	if code != 0 || out != "out1\nout2\n" || errOut != "err1\n" {
		t.Errorf("logs: exit %d stdout %q stderr %q; want the streams apart", code, out, errOut)
	}
	// The last line of both streams: their pumps race, so err1 may have
	// been logged after out2.
	if out, errOut, _ := vcRun(t, nil, "logs", "--tail", "1", id); out+errOut != "out2\n" && out+errOut != "err1\n" {
		t.Errorf("logs --tail 1: stdout %q stderr %q, want the last line only", out, errOut)
	}
	if out, _, _ := vcRun(t, nil, "logs", "-t", id); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z out1\n`).MatchString(out) {
		t.Errorf("logs -t: %q", out)
	}
	// -f prints what there is and what comes, and returns once the
	// container has stopped (whether "late" came before it started or
	// after).
	out, errOut, code = vcRun(t, nil, "logs", "-f", id)
	if code != 0 || out != "out1\nout2\nlate\n" || errOut != "err1\n" {
		t.Errorf("logs -f: exit %d stdout %q stderr %q, want every line and the late one", code, out, errOut)
	}
	if _, errOut, code = vcRun(t, nil, "logs", "--tail", "x", id); code == 0 || !strings.Contains(errOut, "--tail") {
		t.Errorf("--tail x: exit %d stderr %q", code, errOut)
	}
	vcRun(t, nil, "rm", "-f", id)
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
	garbage := filepath.Join(t.TempDir(), "garbage")
	os.WriteFile(garbage, []byte("this is not a kernel nor an initrd\n"), 0o644)
	cases := []struct {
		name string
		args []string
		want []string // all in stderr
		code int      // 0: any non-zero
	}{
		{"missing rootfs", []string{"run", "--rm", "--name", "e2e-bad", "--rootfs", "/nonexistent/rootfs", "--", "true"}, []string{"/nonexistent/rootfs"}, 0},
		{"unknown image", []string{"run", "--rm", "--name", "e2e-bad", "nosuchimage", "--", "true"}, []string{"nosuchimage"}, 0},
		{"command not found", []string{"run", "--rm", "--name", "e2e-bad", "busybox", "--", "/no/such/command"}, []string{"/no/such/command"}, 127},
		{"memory below minimum", []string{"run", "--rm", "--name", "e2e-bad", "--memory", "16M", "busybox", "--", "true"}, []string{"memory"}, 0},
		{"kernel missing", []string{"run", "--rm", "--name", "e2e-bad", "--kernel", "/nonexistent/vmlinuz", "--initrd", "/nonexistent/initrd", "busybox", "--", "true"}, []string{"/nonexistent/vmlinuz"}, 0},
		{"qemu rejects the kernel", []string{"run", "--rm", "--name", "e2e-bad", "--kernel", garbage, "--initrd", garbage, "busybox", "--", "true"}, []string{"qemu", "kernel"}, 0},
		{"guest dies during boot", []string{"run", "--rm", "--name", "e2e-bad", "--kernel", kernel, "--initrd", garbage, "busybox", "--", "true"}, []string{"console", "Kernel panic"}, 0},
		{"unknown sandbox (exec)", []string{"exec", "e2e-nosuch", "true"}, []string{"e2e-nosuch"}, 0},
		{"unknown sandbox (stop)", []string{"stop", "e2e-nosuch"}, []string{"e2e-nosuch"}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errOut, code := vcRun(t, nil, c.args...)
			if code == 0 || (c.code != 0 && code != c.code) {
				t.Fatalf("exit code %d, want %d (0: any failure); stderr:\n%s", code, c.code, errOut)
			}
			for _, w := range c.want {
				if !strings.Contains(errOut, w) {
					t.Fatalf("error does not name %q:\n%s", w, errOut)
				}
			}
			t.Logf("error: %s", lastLines(errOut, 3))
			noLeftovers(t, "e2e-bad")
		})
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
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

// vc run exits as docker run does when the container cannot run: 126 for
// a command that cannot be invoked (a directory, a file without execute
// permission, an environment execve refuses), 127 for one not found, 125
// for vc's own errors; with one clear line on stderr, and nothing left.
func TestRunExitCodes(t *testing.T) {
	host := runtime.NumCPU()
	bigEnv := filepath.Join(t.TempDir(), "big.env")
	var env strings.Builder
	for i := range 40 {
		fmt.Fprintf(&env, "V%d=%s\n", i+1, strings.Repeat("x", 60000))
	}
	os.WriteFile(bigEnv, []byte(env.String()), 0o644)
	for _, tc := range []struct {
		name       string
		flags, cmd []string
		code       int
		want       string
	}{
		{"a directory", nil, []string{"/etc"}, 126, `exec: "/etc": is a directory`},
		{"not executable", nil, []string{"/etc/passwd"}, 126, `exec: "/etc/passwd": permission denied`},
		{"not found", nil, []string{"nosuchcommand"}, 127, `exec: "nosuchcommand": executable file not found in $PATH`},
		{"not found, a path", nil, []string{"/no/such"}, 127, `exec: "/no/such": stat /no/such: no such file or directory`},
		{"detached, a directory", []string{"-d"}, []string{"/etc"}, 126, `exec: "/etc": is a directory`},
		// 2.4 MB: over the 2 MiB execve takes (-e of it would be over
		// what vc's own execve takes).
		{"an environment execve refuses", []string{"--env-file", bigEnv}, []string{"true"}, 126, "arguments and environment of 2400617 bytes, more than the 2097152 the kernel takes (a quarter of the stack's limit): argument list too long"},
		{"a bad flag value", []string{"--cpus", "abc"}, []string{"true"}, 125, `--cpus "abc": want a number of CPUs`},
		{"more CPUs than the host", []string{"--cpus", strconv.Itoa(host + 1)}, []string{"true"}, 125, fmt.Sprintf("--cpus %d: more than the host's %d CPUs", host+1, host)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "e2e-exitcodes"
			args := append(append([]string{"run", "--rm", "--name", id}, tc.flags...), "busybox", "--")
			args = append(args, tc.cmd...)
			start := time.Now()
			_, errOut, code := vcRun(t, nil, args...)
			if code != tc.code || !strings.HasPrefix(errOut, "vc run: ") || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("exit %d, stderr %.400q; want %d and one line with %q", code, errOut, tc.code, tc.want)
			}
			t.Logf("exit %d in %s: %.300s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(errOut))
			if tc.code == 125 && time.Since(start) > 5*time.Second {
				t.Errorf("refused after %s: a VM booted for bad input", time.Since(start))
			}
			noLeftovers(t, id)
		})
	}
}

// -v of a missing host path creates it, a directory, as docker's -v does,
// and the container sees and writes it.
func TestVolumeCreatesHostDir(t *testing.T) {
	host := filepath.Join(t.TempDir(), "missing", "deep")
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--name", "e2e-vmissing", "-v", host+":/x", "busybox", "--", "sh", "-c", "test -d /x && echo dir; echo hi > /x/f")
	if code != 0 || out != "dir\n" || errOut != "" {
		t.Fatalf("run -v of a missing host path: exit %d stdout %q stderr %q; want 0, dir, nothing on stderr", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(host, "f")); err != nil || string(b) != "hi\n" {
		t.Errorf("host %s/f: %q, %v", host, b, err)
	}
	noLeftovers(t, "e2e-vmissing")
}

// --cpus takes a fraction as docker does: the VM gets it rounded up, the
// container a CFS quota of it (cpu.max in its cgroup, guest cgroup v2).
func TestCPUsFraction(t *testing.T) {
	// vc's containers have no /sys/fs/cgroup: a privileged one mounts the
	// guest's cgroup2 and reads its own cgroup's (with or without a
	// cgroup namespace).
	script := `mkdir -p /tmp/cg && mount -t cgroup2 none /tmp/cg && nproc && cat /tmp/cg$(sed -n 's/^0:://p' /proc/self/cgroup)/cpu.max`
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--privileged", "--name", "e2e-cpus", "--cpus", "0.5", "busybox", "--", "sh", "-c", script)
	// The VM: the guest's own vCPU and the limit rounded up, within the
	// host's CPUs (the library's one sizing rule, as the shim's).
	want := fmt.Sprintf("%d\n50000 100000\n", min(2, runtime.NumCPU()))
	if code != 0 || out != want {
		t.Fatalf("run --cpus 0.5: exit %d stdout %q stderr %q; want %q (vCPUs, cpu.max)", code, out, errOut, want)
	}
	noLeftovers(t, "e2e-cpus")
}

// A unix socket of the host bind-mounted into a container (-v
// SOCK:/run/echo.sock) works as with runc: the agent listens at the
// destination and each connection is relayed to the host's socket. Two
// connections at once each get their own echo, a 1 MiB payload and a
// half-close cross the relay, and rm leaves nothing (the server sees
// every connection closed); a connection a container process holds open
// is closed on the host by rm -f.
func TestUnixSocketVolume(t *testing.T) {
	tools := sockClientDir(t)
	sock := filepath.Join(t.TempDir(), "echo.sock")
	counts := testenv.UnixEchoServer(t, sock)
	out, errOut, code := vcRun(t, nil, "run", "--name", "e2e-sock", "-v", sock+":/run/echo.sock", "-v", tools+":/tools:ro", "busybox", "--",
		"sh", "-c", "ls -l /run/echo.sock && /tools/sockclient /run/echo.sock && /tools/sockclient /run/echo.sock")
	defer vcRun(t, nil, "rm", "-f", "e2e-sock")
	// 5 rounds on 2 connections of 15-byte lines, and 1 MiB.
	want := "ok 1048726\n"
	if code != 0 || !strings.HasPrefix(out, "s") || !strings.HasSuffix(out, want+want) {
		t.Fatalf("run -v SOCKET: exit %d, stdout %q, stderr %q; want 0, a socket listed, and %q twice", code, out, errOut, want)
	}
	if _, errOut, code := vcRun(t, nil, "rm", "e2e-sock"); code != 0 {
		t.Fatalf("rm: exit %d, stderr %q", code, errOut)
	}
	noLeftovers(t, "e2e-sock")
	waitConns(t, counts, "after rm", 4, 0)

	// A connection a container process still holds ends with the
	// container: rm -f closes the host's end.
	if _, errOut, code := vcRun(t, nil, "run", "-d", "--name", "e2e-sock2", "-v", sock+":/run/echo.sock", "-v", tools+":/tools:ro", "busybox", "--",
		"/tools/sockclient", "-hold", "/run/echo.sock"); code != 0 {
		t.Fatalf("run -d: exit %d, stderr %q", code, errOut)
	}
	defer vcRun(t, nil, "rm", "-f", "e2e-sock2")
	waitConns(t, counts, "with a connection held in the container", 5, 1)
	if _, errOut, code := vcRun(t, nil, "rm", "-f", "e2e-sock2"); code != 0 {
		t.Fatalf("rm -f: exit %d, stderr %q", code, errOut)
	}
	waitConns(t, counts, "after rm -f of the holding container", 5, 0)
	noLeftovers(t, "e2e-sock2")
}
