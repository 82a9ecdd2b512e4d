package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
)

// vc create leaves the container created; vc cp copies into it (docker
// allows that too); start -a runs it attached and exits with its code; start and restart of a stopped container run it
// again in a new VM with what it wrote and its log kept.
func TestCreateStartRestart(t *testing.T) {
	id := "e2e-create"
	script := `cat /kept /in 2>/dev/null; echo run >> /kept; echo out; echo err >&2; exit 3`
	if out, errOut, code := vcRun(t, nil, "create", "--name", id, "busybox", "--", "sh", "-c", script); code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("create: exit %d stdout %q stderr %q", code, out, errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	if out, _, _ := vcRun(t, nil, "ps", "-a", "--format", "{{.Names}} {{.State}}"); !strings.Contains(out, id+" created\n") {
		t.Fatalf("ps -a after create: %q, want %s created", out, id)
	}
	if got := complete(t, "vc", "--state-root", stateRoot, "start", "e2e-cr"); got != id {
		t.Errorf("completion of vc start e2e-cr: %q, want %s", got, id)
	}
	if out, _, _ := vcRun(t, nil, "logs", id); out != "" {
		t.Fatalf("a created container has output already: %q", out)
	}
	in := filepath.Join(t.TempDir(), "in")
	os.WriteFile(in, []byte("copied\n"), 0o644)
	if _, errOut, code := vcRun(t, nil, "cp", in, id+":/"); code != 0 {
		t.Fatalf("cp into a created container: exit %d: %s", code, errOut)
	}
	out, errOut, code := vcRun(t, nil, "start", "-a", id)
	if code != 3 || out != "copied\nout\n" || !strings.Contains(errOut, "err") {
		t.Fatalf("start -a: exit %d stdout %q stderr %q, want 3, copied, out, err", code, out, errOut)
	}
	// Stopped: start -a runs it again, over what the first run wrote.
	out, errOut, code = vcRun(t, nil, "start", "-a", id)
	if code != 3 || out != "run\ncopied\nout\n" {
		t.Fatalf("second start -a: exit %d stdout %q stderr %q, want 3 and run, copied, out", code, out, errOut)
	}
	if out, errOut, code := vcRun(t, nil, "restart", id); code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("restart: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if out, errOut, code := vcRun(t, nil, "wait", id); code != 0 || strings.TrimSpace(out) != "3" {
		t.Fatalf("wait after restart: exit %d stdout %q stderr %q, want 3", code, out, errOut)
	}
	// The log kept every run: out three times, run from the 2nd and 3rd.
	out, _, _ = vcRun(t, nil, "logs", id)
	if strings.Count(out, "out\n") != 3 || strings.Count(out, "run\n") != 3 {
		t.Errorf("logs after three runs: %q, want out 3 times and run 1+2 times", out)
	}
	if _, errOut, code := vcRun(t, nil, "rm", id); code != 0 {
		t.Fatalf("rm: %s", errOut)
	}
	noLeftovers(t, id)
	noCarry(t, id)
	if _, errOut, code := vcRun(t, nil, "start", "e2e-never-was"); code == 0 || !strings.Contains(errOut, "e2e-never-was") {
		t.Errorf("start of a missing container: exit %d stderr %q, want an error naming it", code, errOut)
	}
}

// restart of a running container stops it and runs it again, keeping
// what it wrote.
func TestRestartRunning(t *testing.T) {
	id := "e2e-restart"
	if _, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sh", "-c", `echo x >> /runs; sleep 1000`); code != 0 {
		t.Fatalf("run -d: %s", errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	if _, errOut, code := vcRun(t, nil, "restart", "-t", "1", id); code != 0 {
		t.Fatalf("restart: %s", errOut)
	}
	waitFor(t, func() bool {
		o, _, _ := vcRun(t, nil, "exec", id, "cat", "/runs")
		return o == "x\nx\n"
	}, "two runs recorded in /runs")
	if _, errOut, code := vcRun(t, nil, "rm", "-f", id); code != 0 {
		t.Fatalf("rm -f: %s", errOut)
	}
	noLeftovers(t, id)
	noCarry(t, id)
}

// noCarry fails if a restart's carry directory of id is left.
func noCarry(t *testing.T, id string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(stateRoot, "."+id+".carry-*")); len(m) > 0 {
		t.Errorf("carry directories left: %v", m)
	}
}

// vc attach streams a background container's output live, stdout and
// stderr apart, and sends it input when it runs with -i; it exits with the
// container's code.
func TestAttach(t *testing.T) {
	id := "e2e-attach"
	if _, errOut, code := vcRun(t, nil, "run", "-di", "--name", id, "busybox", "--", "sh", "-c", `while read l; do echo "got $l"; echo "err $l" >&2; done`); code != 0 {
		t.Fatalf("run -di: %s", errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vcBin, "--state-root", stateRoot, "--data-root", dataRoot, "attach", id)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(stdout)
	for _, word := range []string{"one", "two"} {
		stdin.Write([]byte(word + "\n"))
		line, err := lines.ReadString('\n')
		if err != nil || line != "got "+word+"\n" {
			t.Fatalf("attach: read %q, %v; want got %s (stderr %q)", line, err, word, stderr.String())
		}
	}
	if _, errOut, code := vcRun(t, nil, "kill", id); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	rest, _ := bufio.NewReader(lines).ReadString(0)
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 137 {
		t.Errorf("attach exit %d (%v), want the container's 137; rest of stdout %q", code, err, rest)
	}
	if !strings.Contains(stderr.String(), "err one") || strings.Contains(stderr.String(), "got") {
		t.Errorf("attach stderr %q, want the container's stderr alone", stderr.String())
	}
	if _, errOut, code := vcRun(t, nil, "attach", id); code == 0 || !strings.Contains(errOut, "stopped") {
		t.Errorf("attach to a stopped container: exit %d stderr %q, want refused naming its state", code, errOut)
	}
	if _, errOut, code := vcRun(t, nil, "rm", id); code != 0 {
		t.Fatalf("rm: %s", errOut)
	}
	noLeftovers(t, id)
}

// vc cp copies both ways as docker cp: into a directory, or as a new
// name; a missing source and a missing destination directory are errors.
func TestCopy(t *testing.T) {
	id := "e2e-cp"
	if _, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sleep", "1000"); code != 0 {
		t.Fatalf("run -d: %s", errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte("alpha\n"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "b"), []byte("beta\n"), 0o755)
	if _, errOut, code := vcRun(t, nil, "cp", src, id+":/tmp"); code != 0 {
		t.Fatalf("cp into a directory: %s", errOut)
	}
	if _, errOut, code := vcRun(t, nil, "cp", filepath.Join(src, "a"), id+":/etc/renamed"); code != 0 {
		t.Fatalf("cp as a new name: %s", errOut)
	}
	out, errOut, _ := vcRun(t, nil, "exec", id, "sh", "-c", "cat /tmp/tree/a /tmp/tree/sub/b /etc/renamed; stat -c '%a %u' /tmp/tree/sub/b")
	if out != "alpha\nbeta\nalpha\n755 0\n" {
		t.Fatalf("in the container: %q (stderr %q)", out, errOut)
	}
	vcRun(t, nil, "exec", id, "sh", "-c", "mkdir -p /made/deep && echo made > /made/deep/f")
	dst := t.TempDir()
	if _, errOut, code := vcRun(t, nil, "cp", id+":/made", dst); code != 0 {
		t.Fatalf("cp out into a directory: %s", errOut)
	}
	if _, errOut, code := vcRun(t, nil, "cp", id+":/made/deep/f", filepath.Join(dst, "g")); code != 0 {
		t.Fatalf("cp out as a new name: %s", errOut)
	}
	for p, want := range map[string]string{"made/deep/f": "made\n", "g": "made\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || string(b) != want {
			t.Errorf("host %s: %q %v, want %q", p, b, err, want)
		}
	}
	if _, errOut, code := vcRun(t, nil, "cp", id+":/nope", dst); code != 125 || !strings.Contains(errOut, "could not find the file /nope in container "+id) {
		t.Errorf("cp of a missing path: exit %d stderr %q, want 125 and an error naming it", code, errOut)
	}
	cpRefused(t, id, filepath.Join(src, "a"))
	// vc exec exits as docker exec when its command cannot run.
	for cmd, want := range map[string]int{"nosuchcommand": 127, "/etc": 126} {
		if _, errOut, code := vcRun(t, nil, "exec", id, cmd); code != want || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, cmd) {
			t.Errorf("exec %s: exit %d stderr %q; want %d and one line naming it", cmd, code, errOut, want)
		}
	}
	if out, _, _ := vcRun(t, nil, "exec", id, "sh", "-c", "ls -d /missing /etc/renamed/x 2>&1; true"); strings.Contains(out, "/missing\n") || !strings.Contains(out, "No such file") {
		t.Errorf("a refused cp made something: ls says %q", out)
	}
	vcRun(t, nil, "rm", "-f", id)
	noLeftovers(t, id)
}

// cpRefused checks docker cp's destination rules on container id, running
// or stopped: a destination ending in / must be a directory that exists,
// a missing parent is refused naming it; one clear line, exit 125.
func cpRefused(t *testing.T, id, file string) {
	t.Helper()
	for dst, want := range map[string]string{
		id + ":/missing/":     `DEST "/missing/": the destination directory must exist: could not find the file /missing in container ` + id,
		id + ":/missing/x":    `DEST "/missing/x": could not find the file /missing in container ` + id,
		id + ":/etc/passwd/":  `DEST "/etc/passwd/": /etc/passwd in container ` + id + ` is not a directory`,
		id + ":/etc/passwd/x": `DEST "/etc/passwd/x": /etc/passwd in container ` + id + ` is not a directory`,
	} {
		_, errOut, code := vcRun(t, nil, "cp", file, dst)
		if code != 125 || !strings.HasPrefix(errOut, "vc cp: "+want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("cp to %s: exit %d stderr %q; want 125 and the one line %q", dst, code, errOut, want)
		}
	}
}

// vc cp copies into and out of a stopped container, as docker cp does:
// what it copies in is there when the container runs again; what the
// container wrote is copied out; the destination rules hold.
func TestCopyStopped(t *testing.T) {
	id := "e2e-cp-stopped"
	script := "cat /in/a /in/sub/b /etc/conf 2>&1; stat -c '%a %u' /in/sub/b 2>&1; ls -d /missing 2>&1; echo wrote > /out"
	out, errOut, code := vcRun(t, nil, "run", "--name", id, "busybox", "--", "sh", "-c", script)
	if code != 0 || !strings.Contains(out, "can't open '/in/a'") {
		t.Fatalf("first run: exit %d stdout %q stderr %q", code, out, errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a"), []byte("alpha\n"), 0o644)
	os.WriteFile(filepath.Join(src, "sub", "b"), []byte("beta\n"), 0o750)
	os.Chown(filepath.Join(src, "sub", "b"), 1234, 1234)
	// Into the stopped container: a new name, and into a directory of
	// its image's (the writable layer takes it).
	if _, errOut, code := vcRun(t, nil, "cp", src, id+":/in"); code != 0 {
		t.Fatalf("cp into a stopped container: exit %d: %s", code, errOut)
	}
	conf := filepath.Join(t.TempDir(), "conf")
	os.WriteFile(conf, []byte("conf\n"), 0o644)
	if _, errOut, code := vcRun(t, nil, "cp", conf, id+":/etc/"); code != 0 {
		t.Fatalf("cp into /etc/ of a stopped container: exit %d: %s", code, errOut)
	}
	cpRefused(t, id, conf)
	// Out of it: what its run wrote, and what its image has.
	dst := t.TempDir()
	if _, errOut, code := vcRun(t, nil, "cp", id+":/out", filepath.Join(dst, "out")); code != 0 {
		t.Fatalf("cp out of a stopped container: exit %d: %s", code, errOut)
	}
	if _, errOut, code := vcRun(t, nil, "cp", id+":/etc", dst); code != 0 {
		t.Fatalf("cp a directory out of a stopped container: exit %d: %s", code, errOut)
	}
	for p, want := range map[string]string{"out": "wrote\n", "etc/conf": "conf\n", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"} {
		if b, err := os.ReadFile(filepath.Join(dst, p)); err != nil || !strings.HasPrefix(string(b), want) {
			t.Errorf("copied out %s: %q, %v; want %q", p, b, err, want)
		}
	}
	if _, errOut, code := vcRun(t, nil, "cp", id+":/nope", dst); code != 125 || !strings.Contains(errOut, "could not find the file /nope in container "+id) {
		t.Errorf("cp of a missing path out of a stopped container: exit %d stderr %q", code, errOut)
	}
	// Its overlay gone (a host that rebooted): cp mounts it again, and
	// reads what was copied in from the writable layer.
	layer := filepath.Join(stateRoot, id, "layer", "rootfs")
	if err := syscall.Unmount(layer, 0); err != nil {
		t.Fatalf("unmount the stopped container's overlay: %v", err)
	}
	if _, errOut, code := vcRun(t, nil, "cp", id+":/in/a", filepath.Join(dst, "a")); code != 0 {
		t.Fatalf("cp out of a stopped container without its overlay: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "a")); err != nil || string(b) != "alpha\n" {
		t.Errorf("copied out without the overlay: %q, %v", b, err)
	}
	// Run again: it finds what was copied in, owned by root (no -a), and
	// no /missing.
	out, errOut, code = vcRun(t, nil, "start", "-a", id)
	want := "alpha\nbeta\nconf\n750 0\nls: /missing: No such file or directory\n"
	if code != 0 || out != want {
		t.Fatalf("start -a after cp: exit %d stdout %q stderr %q; want %q", code, out, errOut, want)
	}
	vcRun(t, nil, "rm", "-f", id)
	noLeftovers(t, id)
}

// --init runs docker's init as PID 1, the command as its child.
func TestInit(t *testing.T) {
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--init", "--name", "e2e-init", "busybox", "--", "sh", "-c", "cat /proc/1/comm; echo $$")
	if code != 0 || !strings.HasPrefix(out, "docker-init\n") || strings.HasSuffix(out, "\n1\n") {
		t.Fatalf("run --init: exit %d stdout %q stderr %q, want PID 1 docker-init and the shell not PID 1", code, out, errOut)
	}
	noLeftovers(t, "e2e-init")
}

// vc --help and vc help COMMAND answer on stdout with 0; an unknown one
// is an error.
func TestHelp(t *testing.T) {
	out, _, code := vcRun(t, nil, "--help")
	for _, c := range []string{"create", "start", "restart", "attach", "cp", "completion"} {
		if code != 0 || !strings.Contains(out, "\n  "+c+" ") {
			t.Errorf("vc --help: exit %d, %q missing from\n%s", code, c, out)
		}
	}
	if out, _, code := vcRun(t, nil, "help", "run"); code != 0 || !strings.Contains(out, "-init") || !strings.Contains(out, "usage: vc run") {
		t.Errorf("vc help run: exit %d\n%s", code, out)
	}
	if out, _, code := vcRun(t, nil, "run", "--help"); code != 0 || !strings.Contains(out, "usage: vc run") {
		t.Errorf("vc run --help: exit %d\n%s", code, out)
	}
	if got := complete(t, "vc", "rest"); got != "restart" {
		t.Errorf("completion of vc rest: %q, want restart", got)
	}
	if got := complete(t, "vc", "run", "--ini"); got != "--init --initrd" {
		t.Errorf("completion of vc run --ini: %q, want --init --initrd", got)
	}
	if _, errOut, code := vcRun(t, nil, "help", "nope"); code == 0 || !strings.Contains(errOut, "nope") {
		t.Errorf("vc help nope: exit %d stderr %q", code, errOut)
	}
}

// complete runs vc's bash completion for the words (the last one being
// completed) and returns its answers.
func complete(t *testing.T, words ...string) string {
	t.Helper()
	script, _, code := vcRun(t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("vc completion bash: exit %d", code)
	}
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	prog := script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "; _vc; echo \"${COMPREPLY[*]}\"\n"
	cmd := exec.Command("bash", "-c", prog)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(vcBin)+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// A stopped --rootfs container's files are its directory: vc cp writes
// and reads there.
func TestCopyStoppedRootfs(t *testing.T) {
	id := "e2e-cp-rootfs"
	bb, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", bb, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the busybox rootfs: %v: %s", err, out)
	}
	if _, errOut, code := vcRun(t, nil, "run", "--name", id, "--rootfs", dir, "--", "sh", "-c", "echo ran > /ran"); code != 0 {
		t.Fatalf("run: exit %d: %s", code, errOut)
	}
	t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, []byte("in\n"), 0o644)
	if _, errOut, code := vcRun(t, nil, "cp", f, id+":/tmp/"); code != 0 {
		t.Fatalf("cp into a stopped --rootfs container: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "tmp", "f")); err != nil || string(b) != "in\n" {
		t.Errorf("%s/tmp/f: %q, %v", dir, b, err)
	}
	out := t.TempDir()
	if _, errOut, code := vcRun(t, nil, "cp", id+":/ran", out); code != 0 {
		t.Fatalf("cp out of a stopped --rootfs container: exit %d: %s", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(out, "ran")); err != nil || string(b) != "ran\n" {
		t.Errorf("copied out /ran: %q, %v", b, err)
	}
	vcRun(t, nil, "rm", "-f", id)
	noLeftovers(t, id)
}
