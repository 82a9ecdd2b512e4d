package runtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// dockerRun is docker run with opts, busybox and args, with vc-runtime
// (runtime "vc") or runc (Debian's, docker's default) as rt.
func dockerRun(t *testing.T, rt string, opts []string, args ...string) (string, string, int) {
	t.Helper()
	full := append(append([]string{"run", "--runtime", rt}, opts...), images.BusyboxRef)
	return docker(t, append(full, args...)...)
}

// dockerIn is docker with stdin.
func dockerIn(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	docker(t, "version") // starts the daemon, or skips
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return dockerD.run(ctx, []byte(stdin), args...)
}

// dockerNoneLeft fails the test if anything vc-runtime made for the
// daemon's containers is left: a directory under its root, or a process
// (owner, QEMU, passt) naming one.
func dockerNoneLeft(t *testing.T) {
	t.Helper()
	roots, _ := filepath.Glob(filepath.Join(dockerD.dir, "exec", "runtime-*"))
	deadline := time.Now().Add(20 * time.Second)
	for {
		var left []string
		for _, r := range roots {
			ents, _ := filepath.Glob(filepath.Join(r, "*", "*"))
			left = append(left, ents...)
		}
		pids := proc.Find(func(args []string) bool {
			return strings.Contains(strings.Join(args, " "), filepath.Join(dockerD.dir, "exec", "runtime-"))
		})
		if len(left) == 0 && len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %v, processes %v", left, pids)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDockerRun: docker run --runtime vc --rm prints the guest's kernel
// (not the host's), has docker's network (the bridge's address on eth0;
// loopback only with --network none),
// keeps stdout and stderr apart, takes stdin, and exits with the
// container's status, as runc's containers do; nothing is left.
func TestDockerRun(t *testing.T) {
	host := hostKernel()
	start := time.Now()
	out, errOut, code := dockerRun(t, dockerRuntime, []string{"--rm"}, "uname", "-r")
	took := time.Since(start)
	if code != 0 || strings.TrimSpace(out) == "" || strings.TrimSpace(out) == host {
		t.Fatalf("docker run uname -r: exit %d, %q (host %s); stderr %s", code, out, host, errOut)
	}
	start = time.Now()
	if _, errOut, code := dockerRun(t, "runc", []string{"--rm"}, "true"); code != 0 {
		t.Fatalf("docker run --runtime runc true: exit %d: %s", code, errOut)
	}
	t.Logf("docker run --rm: vc-runtime %v (uname -r), runc %v (true)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	dockerNoneLeft(t)

	out, errOut, code = dockerRun(t, dockerRuntime, []string{"--rm"}, "ip", "-4", "-o", "addr")
	// Only loopback and eth0, the container's end of docker's veth: an
	// address of docker's bridge (172.17.0.1) would be the daemon's
	// namespace mirrored, not the container's.
	if code != 0 || !regexp.MustCompile(`(?m)^\d+: eth0\s+inet 172\.17\.0\.\d+/16 `).MatchString(out) ||
		strings.Count(strings.TrimSpace(out), "\n") != 1 || strings.Contains(out, "172.17.0.1/") {
		t.Errorf("docker run ip addr: exit %d, %q (stderr %s); want lo and eth0 on docker's bridge 172.17.0.0/16", code, out, errOut)
	}
	// --network none: docker's hook leaves the namespace with loopback
	// only.
	out, errOut, code = dockerRun(t, dockerRuntime, []string{"--rm", "--network", "none"}, "ip", "-o", "link")
	if code != 0 || strings.Contains(out, "eth0") || !strings.Contains(out, "lo:") {
		t.Errorf("docker run --network none ip link: exit %d, %q (stderr %s); want loopback only", code, out, errOut)
	}
	for _, rt := range []string{dockerRuntime, "runc"} {
		out, errOut, code = dockerRun(t, rt, []string{"--rm"}, "sh", "-c", "echo out; echo err >&2; exit 5")
		if code != 5 || out != "out\n" || strings.TrimSpace(errOut) != "err" {
			t.Errorf("%s: docker run exit 5: exit %d, stdout %q, stderr %q", rt, code, out, errOut)
		}
	}
	out, errOut, code = dockerIn(t, "hello\n", "run", "--rm", "-i", "--runtime", dockerRuntime, images.BusyboxRef, "sh", "-c", "read l; echo got $l")
	if code != 0 || out != "got hello\n" {
		t.Errorf("docker run -i: exit %d, %q (stderr %s); want got hello", code, out, errOut)
	}
	// Bad input: a command the image lacks fails as with runc.
	_, errOut, code = dockerRun(t, dockerRuntime, []string{"--rm"}, "/nonexistent")
	_, runcErr, runcCode := dockerRun(t, "runc", []string{"--rm"}, "/nonexistent")
	if code != runcCode || !strings.Contains(errOut, "/nonexistent") {
		t.Errorf("docker run of a missing command: exit %d, %q; runc: exit %d, %q", code, errOut, runcCode, runcErr)
	}
	dockerNoneLeft(t)
}

// dial connects to addr from the daemon's network namespace, the host
// its published ports are on.
func (d *dockerdT) dial(addr string) (net.Conn, error) {
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", d.cmd.Process.Pid))
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // else the thread ends with its goroutine
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestDockerDetached: docker run -d with a published port, inspect, logs,
// exec (exit codes), stop (SIGTERM through vc-runtime kill, the
// container's trap), rm; the port answers from the daemon's host with
// what only the guest knows (its kernel).
func TestDockerDetached(t *testing.T) {
	const name = "vc-docker-web"
	const port = 18080
	t.Cleanup(func() {
		docker(t, "rm", "-f", name)
		dockerNoneLeft(t)
	})
	_, errOut, code := dockerRun(t, dockerRuntime, []string{"-d", "--name", name, "-p", strconv.Itoa(port) + ":80"},
		"sh", "-c", `mkdir /www; uname -r > /www/index.html; httpd -p 80 -h /www; echo started; trap "echo stopping; exit 0" TERM; while :; do sleep 0.2; done`)
	if code != 0 {
		t.Fatalf("docker run -d: exit %d: %s", code, errOut)
	}
	waitLogs(t, "docker logs", func() string { out, _, _ := docker(t, "logs", name); return out }, "started")
	if out, _, _ := docker(t, "inspect", "--format", "{{.State.Status}} {{.HostConfig.Runtime}}", name); strings.TrimSpace(out) != "running "+dockerRuntime {
		t.Errorf("inspect: %q, want running %s", out, dockerRuntime)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Dial: func(_, addr string) (net.Conn, error) { return dockerD.dial(addr) },
	}}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
	if err != nil {
		t.Fatalf("GET the published port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if host := hostKernel(); resp.StatusCode != 200 || strings.TrimSpace(string(body)) == "" || strings.TrimSpace(string(body)) == host {
		t.Errorf("GET the published port: %s, %q (host kernel %s); want the guest's kernel", resp.Status, body, host)
	}

	if out, errOut, code := docker(t, "exec", name, "sh", "-c", "echo in exec; exit 3"); code != 3 || out != "in exec\n" {
		t.Errorf("docker exec: exit %d, %q (stderr %s); want 3, in exec", code, out, errOut)
	}
	if out, errOut, code := dockerIn(t, "hello\n", "exec", "-i", name, "sh", "-c", "read l; echo got $l"); code != 0 || out != "got hello\n" {
		t.Errorf("docker exec -i: exit %d, %q (stderr %s); want got hello", code, out, errOut)
	}
	if _, errOut, code := docker(t, "exec", name, "/nonexistent"); code != 126 && code != 127 {
		t.Errorf("docker exec of a missing command: exit %d (stderr %s), want 126 or 127", code, errOut)
	}
	if _, errOut, code := docker(t, "stop", "-t", "20", name); code != 0 {
		t.Fatalf("docker stop: exit %d: %s", code, errOut)
	}
	if out, _, _ := docker(t, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name); strings.TrimSpace(out) != "exited 0" {
		t.Errorf("after stop: %q, want exited 0 (the container's trap)", out)
	}
	if out, _, _ := docker(t, "logs", name); !strings.Contains(out, "stopping") {
		t.Errorf("logs after stop: %q", out)
	}
	if _, errOut, code := docker(t, "rm", name); code != 0 {
		t.Fatalf("docker rm: exit %d: %s", code, errOut)
	}
	dockerNoneLeft(t)
}

// TestDockerKill: docker kill ends the container with 137 (SIGKILL), as
// runc's; docker rm -f of a running container removes everything.
func TestDockerKill(t *testing.T) {
	const killed, forced = "vc-docker-killed", "vc-docker-forced"
	t.Cleanup(func() {
		docker(t, "rm", "-f", killed, forced)
		dockerNoneLeft(t)
	})
	for _, name := range []string{killed, forced} {
		if _, errOut, code := dockerRun(t, dockerRuntime, []string{"-d", "--name", name}, "sleep", "1000"); code != 0 {
			t.Fatalf("docker run -d %s: exit %d: %s", name, code, errOut)
		}
	}
	if _, errOut, code := docker(t, "kill", killed); code != 0 {
		t.Fatalf("docker kill: exit %d: %s", code, errOut)
	}
	if out, _, _ := docker(t, "wait", killed); strings.TrimSpace(out) != "137" {
		t.Errorf("docker wait after kill: %q, want 137", out)
	}
	if _, errOut, code := docker(t, "rm", "-f", killed, forced); code != 0 {
		t.Fatalf("docker rm -f: exit %d: %s", code, errOut)
	}
	if out, _, _ := docker(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("docker ps -a after rm -f: %q", out)
	}
	dockerNoneLeft(t)
}
