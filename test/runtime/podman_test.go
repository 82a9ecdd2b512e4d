package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

var (
	podmanOnce sync.Once
	podmanErr  error
)

// podmanRoot is vc-runtime's root under podman: its default, which
// podman's cleanup process (conmon's exit command) uses too, since it
// does not pass podman's --runtime-flag on.
const podmanRoot = "/run/vc-runtime"

// podman runs podman with vc-runtime as its OCI runtime and returns stdout, stderr and the exit code. It skips
// the test where podman is not installed; the busybox and pause images
// are loaded from tarballs built here (nothing is pulled).
func podman(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	path, err := exec.LookPath("podman")
	if err != nil {
		testenv.Skip(t, "podman not installed (hack/install-deps.sh installs it)")
	}
	podmanOnce.Do(func() {
		tars, err := images.WriteAll(t.TempDir())
		if err != nil {
			podmanErr = err
			return
		}
		for _, tar := range tars {
			if out, err := exec.Command(path, "load", "-i", tar).CombinedOutput(); err != nil {
				podmanErr = fmt.Errorf("%s: %w: %s", tar, err, out)
				return
			}
		}
	})
	if podmanErr != nil {
		t.Fatalf("podman load busybox and pause: %v", podmanErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := podmanCmd(ctx, path, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Run()
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// podmanCmd is podman at path running args with vc-runtime.
func podmanCmd(ctx context.Context, path string, args ...string) *exec.Cmd {
	full := []string{
		"--runtime", runtimeBin,
		"--runtime-flag", "data-root=" + dataRoot,
		"--runtime-flag", "accel=tcg",
	}
	cmd := exec.CommandContext(ctx, path, append(full, args...)...)
	cmd.Env = append(os.Environ(), "VC_AGENT="+agentBin)
	return cmd
}

// podmanRun are podman run's options this host needs (its limits are
// above what the VM's container may take).
var podmanRun = []string{"run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}

// noneLeft fails the test if anything of podman's container cid is left
// under vc-runtime's root, or a process names its directory.
func noneLeft(t *testing.T, cid string) {
	t.Helper()
	if cid == "" {
		t.Fatal("no container id")
	}
	dir := filepath.Join(podmanRoot, cid) + "/"
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, statErr := os.Stat(dir)
		pids := proc.Find(func(args []string) bool { return strings.Contains(strings.Join(args, " "), dir) })
		if os.IsNotExist(statErr) && len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s left behind: %v, processes %v", cid, statErr, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cidRun is podman run with --cidfile; it returns the container's id too.
func cidRun(t *testing.T, args ...string) (out, errOut string, code int, cid string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "cid")
	out, errOut, code = podman(t, append(append(podmanRun, "--cidfile", f), args...)...)
	b, _ := os.ReadFile(f)
	return out, errOut, code, strings.TrimSpace(string(b))
}

// TestPodmanRun: podman --runtime vc-runtime run --rm prints the guest's
// kernel, keeps stdout and stderr apart and exits with the container's
// status.
func TestPodmanRun(t *testing.T) {
	out, errOut, code, cid := cidRun(t, "--rm", "docker.io/library/busybox:vc-test", "uname", "-r")
	var u unix.Utsname
	unix.Uname(&u)
	host := unix.ByteSliceToString(u.Release[:])
	if code != 0 || strings.TrimSpace(out) == "" || strings.TrimSpace(out) == host {
		t.Fatalf("podman run uname -r: exit %d, %q (host %s); stderr %s", code, out, host, errOut)
	}
	noneLeft(t, cid)
	// Networks: podman's bridge (its namespace's veth, mirrored into the
	// VM), and none (loopback only).
	out, errOut, code, cid = cidRun(t, "--rm", "docker.io/library/busybox:vc-test", "ip", "-4", "-o", "addr")
	if code != 0 || !strings.Contains(out, "eth0") || !strings.Contains(out, "inet 10.88.") {
		t.Errorf("podman run ip addr: exit %d, %q (stderr %s); want eth0 in podman's 10.88.0.0/16", code, out, errOut)
	}
	noneLeft(t, cid)
	out, errOut, code, cid = cidRun(t, "--rm", "--network", "none", "docker.io/library/busybox:vc-test", "ip", "-o", "link")
	if code != 0 || strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
		t.Errorf("podman run --network none ip link: exit %d, %q (stderr %s); want loopback only", code, out, errOut)
	}
	noneLeft(t, cid)
	out, errOut, code, cid = cidRun(t, "--rm", "docker.io/library/busybox:vc-test", "sh", "-c", "echo out; echo err >&2; exit 5")
	if code != 5 || out != "out\n" || !strings.Contains(errOut, "err") {
		t.Errorf("podman run exit 5: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	noneLeft(t, cid)
}

// TestPodmanDetached: podman run -d, logs, stop (SIGTERM through
// vc-runtime kill), rm.
func TestPodmanDetached(t *testing.T) {
	const name = "vc-runtime-test-web"
	var cid string
	t.Cleanup(func() {
		podman(t, "rm", "-f", name)
		if cid != "" {
			noneLeft(t, cid)
		}
	})
	_, errOut, code, cid := cidRun(t, "-d", "--name", name, "docker.io/library/busybox:vc-test",
		"sh", "-c", `echo started; trap "echo stopping; exit 0" TERM; while :; do sleep 0.2; done`)
	if code != 0 {
		t.Fatalf("podman run -d: exit %d: %s", code, errOut)
	}
	waitLogs(t, "podman logs", func() string { out, _, _ := podman(t, "logs", name); return out }, "started")
	if out, _, _ := podman(t, "inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(out) != "running" {
		t.Errorf("status %q, want running", out)
	}
	if out, errOut, code := podman(t, "exec", name, "sh", "-c", "echo in exec; exit 3"); code != 3 || out != "in exec\n" {
		t.Errorf("podman exec: exit %d, %q (stderr %s); want 3, in exec", code, out, errOut)
	}
	if _, errOut, code := podman(t, "exec", name, "/nonexistent"); code != 127 {
		t.Errorf("podman exec of a missing command: exit %d (stderr %s), want 127", code, errOut)
	}
	if _, errOut, code := podman(t, "pause", name); code != 0 {
		t.Errorf("podman pause: exit %d: %s", code, errOut)
	}
	if out, _, _ := podman(t, "inspect", "--format", "{{.State.Status}}", name); strings.TrimSpace(out) != "paused" {
		t.Errorf("status after pause %q, want paused", out)
	}
	if _, errOut, code := podman(t, "unpause", name); code != 0 {
		t.Errorf("podman unpause: exit %d: %s", code, errOut)
	}
	if _, errOut, code := podman(t, "stop", "-t", "20", name); code != 0 {
		t.Fatalf("podman stop: exit %d: %s", code, errOut)
	}
	out, _, _ := podman(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name)
	if strings.TrimSpace(out) != "exited 0" {
		t.Errorf("after stop: %q, want exited 0 (the container's trap)", out)
	}
	if out, _, _ := podman(t, "logs", name); !strings.Contains(out, "stopping") {
		t.Errorf("logs after stop: %q", out)
	}
	if _, errOut, code := podman(t, "rm", name); code != 0 {
		t.Fatalf("podman rm: exit %d: %s", code, errOut)
	}
	noneLeft(t, cid)
}

// TestPodmanTerminal: podman run -it on a terminal (a pty here): the
// container's terminal has the size of podman's, takes input, its output
// arrives with the container's line endings only (\r\n, not the \r\r\n
// of a second terminal's processing on the host), and run exits with the
// container's status.
func TestPodmanTerminal(t *testing.T) {
	podman(t, "--version") // skips without podman; loads the images
	path, _ := exec.LookPath("podman")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cidFile := filepath.Join(t.TempDir(), "cid")
	cmd := podmanCmd(ctx, path, append(append(podmanRun, "-it", "--rm", "--cidfile", cidFile),
		"docker.io/library/busybox:vc-test", "sh", "-c", "test -t 0 && test -t 1 && echo isatty; stty size; read x; echo got $x; exit 4")...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	t.Cleanup(func() {
		// A failed run's container is removed; a passed one is gone.
		cmd.Process.Kill()
		if b, _ := os.ReadFile(cidFile); len(b) > 0 {
			cid := strings.TrimSpace(string(b))
			podman(t, "rm", "-f", "-t", "0", cid)
			noneLeft(t, cid)
		}
	})
	var mu sync.Mutex
	var out bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			mu.Lock()
			got := out.String()
			mu.Unlock()
			if strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("podman run -it: no %q in %q", want, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("isatty\r\n40 100\r\n")
	if _, err := io.WriteString(tty, "typed\r"); err != nil {
		t.Fatal(err)
	}
	waitFor("got typed\r\n")
	cmd.Wait()
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	got := out.String()
	mu.Unlock()
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("podman run -it: exit %d, want 4; output %q", code, got)
	}
	if strings.Contains(got, "\r\r") || strings.Count(got, "typed\r\n") != 2 {
		t.Errorf("podman run -it output %q: want each line ended by one \\r\\n and the input echoed once", got)
	}
}

// TestPodmanPublish: podman run -d -p HOSTPORT:80 publishes the
// container's port on the host (podman's bridge network, its namespace
// mirrored into the VM): an HTTP GET from the host reaches busybox httpd
// in the VM.
func TestPodmanPublish(t *testing.T) {
	const name = "vc-runtime-test-publish"
	var cid string
	t.Cleanup(func() {
		podman(t, "rm", "-f", "-t", "0", name)
		if cid != "" {
			noneLeft(t, cid)
		}
	})
	port := freePort(t)
	_, errOut, code, cid := cidRun(t, "-d", "--name", name, "-p", port+":80", "docker.io/library/busybox:vc-test",
		"sh", "-c", "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www")
	if code != 0 {
		t.Fatalf("podman run -d -p %s:80: exit %d: %s", port, code, errOut)
	}
	if body := httpGet(t, "http://127.0.0.1:"+port+"/"); body != "published\n" {
		t.Fatalf("GET http://127.0.0.1:%s/: %q, want the container's page", port, body)
	}
	if _, errOut, code := podman(t, "rm", "-f", "-t", "0", name); code != 0 {
		t.Fatalf("podman rm -f: exit %d: %s", code, errOut)
	}
	noneLeft(t, cid)
	cid = ""
}

// freePort is a TCP port free on the host now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// httpGet GETs url until it answers (a minute at most) and returns the
// body of a 200 answer; another status fails the test.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s, %q", url, resp.Status, body)
			}
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestPodmanCgroupNamespace: under podman on this cgroup v1 host, whose
// spec has no cgroup namespace (podman's default on v1 is the host's), the
// container still sees its own cgroup v2 limit at the root of
// /sys/fs/cgroup and "0::/" as its cgroup: the guest runs cgroup v2 and
// its agent gives every container a cgroup namespace there, as podman
// does on a cgroup v2 host.
func TestPodmanCgroupNamespace(t *testing.T) {
	out, errOut, code, cid := cidRun(t, "--rm", "-m", "96m", "docker.io/library/busybox:vc-test", "cat", "/sys/fs/cgroup/memory.max", "/proc/self/cgroup")
	if code != 0 || out != "100663296\n0::/\n" {
		t.Errorf("podman run -m 96m cat memory.max /proc/self/cgroup: exit %d, %q (stderr %s); want the limit 100663296 and 0::/", code, out, errOut)
	}
	noneLeft(t, cid)
}
