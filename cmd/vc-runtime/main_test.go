package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// runMain runs the CLI in this process and returns its exit code and
// stderr.
func runMain(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var stderr bytes.Buffer
	code := Main(args, &stderr)
	return code, stderr.String()
}

func TestGlobalFlags(t *testing.T) {
	g, rest, err := parseGlobals([]string{"--root", "/r", "--log-format=json", "--systemd-cgroup", "--debug", "state", "x"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if g.root != "/r" || g.logFormat != "json" || !g.systemdCgroup || !g.debug || strings.Join(rest, " ") != "state x" {
		t.Errorf("globals %+v, rest %q", g, rest)
	}
	wd, _ := os.Getwd()
	if g, _, err := parseGlobals([]string{"--root", "rel"}, &bytes.Buffer{}); err != nil || g.root != filepath.Join(wd, "rel") {
		t.Errorf("relative --root: %+v, %v", g, err)
	}
	g, _, err = parseGlobals(nil, &bytes.Buffer{})
	if err != nil || g.root != DefaultRoot || g.logFormat != "text" {
		t.Errorf("defaults: %+v, %v", g, err)
	}
	if _, _, err := parseGlobals([]string{"--log-format", "xml", "list"}, &bytes.Buffer{}); err == nil {
		t.Error("--log-format xml accepted")
	}
	if code, _ := runMain(t, "--no-such-flag", "list"); code != 1 {
		t.Errorf("unknown flag: exit %d, want 1", code)
	}
	if code, stderr := runMain(t, "--root", t.TempDir(), "frobnicate"); code != 1 || !strings.Contains(stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, %q", code, stderr)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{
		"9": unix.SIGKILL, "KILL": unix.SIGKILL, "SIGKILL": unix.SIGKILL, "sigterm": unix.SIGTERM,
		"term": unix.SIGTERM, "USR1": unix.SIGUSR1, "SIGWINCH": unix.SIGWINCH, "15": unix.SIGTERM,
	} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "65", "NOPE", "SIG"} {
		if _, err := parseSignal(in); err == nil {
			t.Errorf("parseSignal(%q): no error", in)
		}
	}
}

// writeState records a container as an owner would.
func writeState(t *testing.T, root string, st *containerState) {
	t.Helper()
	if err := os.MkdirAll(containerDir(root, st.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := st.save(root); err != nil {
		t.Fatal(err)
	}
}

func TestStateJSON(t *testing.T) {
	root := t.TempDir()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// A live owner: this test process.
	st := &containerState{ID: "c1", Bundle: "/b", Rootfs: "/b/rootfs", Created: created, Status: statusRunning,
		OwnerPid: os.Getpid(), Annotations: map[string]string{"a": "b"}}
	writeState(t, root, st)
	got, err := loadState(root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(got.oci())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, k := range []string{"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations"} {
		if _, ok := m[k]; !ok {
			t.Errorf("state JSON %s: no %q", b, k)
		}
	}
	if m["status"] != "running" || m["pid"] != float64(os.Getpid()) || m["created"] != "2026-01-02T03:04:05Z" || m["bundle"] != "/b" {
		t.Errorf("state JSON %s", b)
	}

	// An owner that is gone: stopped, pid 0, whatever it recorded.
	st.OwnerPid, st.OwnerStart = os.Getpid(), 1
	if s := st.oci(); s.Status != statusStopped || s.Pid != 0 {
		t.Errorf("gone owner: %+v", s)
	}
	st.Status = statusStopped
	st.OwnerStart = 0
	if s := st.oci(); s.Status != statusStopped || s.Pid != 0 {
		t.Errorf("stopped: %+v", s)
	}
}

func TestErrors(t *testing.T) {
	root := t.TempDir()
	bundle := t.TempDir()
	r := []string{"--root", root}

	// runc's messages, exit code 1.
	check := func(wantMsg string, args ...string) {
		t.Helper()
		code, stderr := runMain(t, append(r, args...)...)
		if code != 1 || !strings.Contains(stderr, wantMsg) {
			t.Errorf("%q: exit %d, stderr %q; want 1, %q", args, code, stderr, wantMsg)
		}
	}
	check("JSON specification file config.json not found", "create", "--bundle", bundle, "c")
	for _, cmd := range []string{"state", "start", "kill", "delete", "pause", "resume"} {
		check("container does not exist", cmd, "nope")
	}
	check("invalid id format", "state", "../etc")
	check(`"state" requires exactly 1 argument(s)`, "state")
	check("unknown signal", "kill", "nope", "SIGNOPE")
	check("not supported", "checkpoint", "c")
	check("not supported", "restore", "c")

	// A valid bundle, for an id that exists.
	os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
	if code, stderr := runMain(t, "spec", "--bundle", bundle); code != 0 {
		t.Fatalf("spec: %d %s", code, stderr)
	}
	check("File config.json exists", "spec", "--bundle", bundle)
	writeState(t, root, &containerState{ID: "c", Bundle: bundle, Status: statusStopped})
	check("container with id exists: c", "create", "--bundle", bundle, "c")
	check("container not running", "kill", "c", "KILL")
	check("container not running", "pause", "c")
	check("cannot start a container that has stopped", "start", "c")
	// spec's terminal without a console socket.
	check("cannot allocate tty if runc will detach without setting console socket", "create", "--bundle", bundle, "d")
	if _, err := os.Stat(containerDir(root, "d")); !os.IsNotExist(err) {
		t.Errorf("failed create left %s: %v", containerDir(root, "d"), err)
	}

	// delete of a stopped container removes it; --force of none is fine.
	if code, stderr := runMain(t, append(r, "delete", "c")...); code != 0 {
		t.Errorf("delete: %d %s", code, stderr)
	}
	if _, err := os.Stat(containerDir(root, "c")); !os.IsNotExist(err) {
		t.Errorf("delete left %s: %v", containerDir(root, "c"), err)
	}
	if code, stderr := runMain(t, append(r, "delete", "--force", "c")...); code != 0 {
		t.Errorf("delete --force of nothing: %d %s", code, stderr)
	}
}

func TestLogJSON(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	code, stderr := runMain(t, "--root", t.TempDir(), "--log", log, "--log-format", "json", "kill", "nope")
	if code != 1 || strings.TrimSpace(stderr) != "container does not exist" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		t.Fatalf("log %q: %v", b, err)
	}
	if m["level"] != "error" || m["msg"] != "container does not exist" || m["time"] == nil {
		t.Errorf("log line %s", b)
	}
}

func TestFeaturesAndList(t *testing.T) {
	root := t.TempDir()
	writeState(t, root, &containerState{ID: "b", Bundle: "/b", Status: statusStopped})
	writeState(t, root, &containerState{ID: "a", Bundle: "/a", Status: statusStopped})
	states, err := listStates(root)
	if err != nil || len(states) != 2 || states[0].ID != "a" || states[1].Status != statusStopped {
		t.Errorf("listStates = %+v, %v", states, err)
	}
	if states, err := listStates(filepath.Join(root, "none")); err != nil || states != nil {
		t.Errorf("listStates of no root = %v, %v", states, err)
	}
	var out bytes.Buffer
	stdout = &out
	defer func() { stdout = os.Stdout }()
	if code, stderr := runMain(t, "features"); code != 0 {
		t.Errorf("features: %d %s", code, stderr)
	}
	var f map[string]any
	if err := json.Unmarshal(out.Bytes(), &f); err != nil || f["ociVersionMin"] != "1.0.0" {
		t.Errorf("features %s: %v", out.Bytes(), err)
	}
	out.Reset()
	if code, stderr := runMain(t, "--root", root, "list", "--format", "json"); code != 0 {
		t.Errorf("list: %d %s", code, stderr)
	}
	var l []map[string]any
	if err := json.Unmarshal(out.Bytes(), &l); err != nil || len(l) != 2 || l[0]["id"] != "a" {
		t.Errorf("list --format json: %s: %v", out.Bytes(), err)
	}
}

func TestExecProcess(t *testing.T) {
	base := &specs.Process{Args: []string{"init"}, Env: []string{"PATH=/bin"}, Cwd: "/", User: specs.User{UID: 5, GID: 6}}
	p, err := execProcess(base, []string{"ls", "-l"}, []string{"A=b"}, "/tmp", "1000:100", true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Args, " ") != "ls -l" || strings.Join(p.Env, " ") != "PATH=/bin A=b" || p.Cwd != "/tmp" || p.User.UID != 1000 || p.User.GID != 100 || !p.Terminal {
		t.Errorf("exec process %+v", p)
	}
	if len(base.Env) != 1 || base.Args[0] != "init" {
		t.Errorf("base changed: %+v", base)
	}
	if p, err := execProcess(base, []string{"x"}, nil, "", "7", false); err != nil || p.User.UID != 7 || p.User.GID != 0 || p.Cwd != "/" {
		t.Errorf("--user 7: %+v, %v", p, err)
	}
	for _, u := range []string{"root", "1:x", "-1"} {
		if _, err := execProcess(base, []string{"x"}, nil, "", u, false); err == nil {
			t.Errorf("--user %q accepted", u)
		}
	}
}

func TestParsePids(t *testing.T) {
	pids, err := parsePids("PID   COMMAND\n    1 sh -c x\n   13 ps -o pid,args\n   17 sleep 1\n")
	if err != nil || len(pids) != 2 || pids[0] != 1 || pids[1] != 17 {
		t.Errorf("parsePids = %v, %v", pids, err)
	}
	if _, err := parsePids("PID\nx y\n"); err == nil {
		t.Error("bad pid accepted")
	}
}

func TestNetwork(t *testing.T) {
	for _, c := range []struct {
		ns        []specs.LinuxNamespace
		netns     string
		noNetwork bool
	}{
		{nil, "", false},
		{[]specs.LinuxNamespace{{Type: specs.PIDNamespace}}, "", false},
		{[]specs.LinuxNamespace{{Type: specs.NetworkNamespace}}, "", true},
		{[]specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/netns/x"}}, "/run/netns/x", false},
	} {
		netns, nat := network(&specs.Spec{Linux: &specs.Linux{Namespaces: c.ns}})
		if netns != c.netns || nat.Disabled != c.noNetwork {
			t.Errorf("namespaces %v: netns %q, NAT disabled %v; want %q, %v", c.ns, netns, nat.Disabled, c.netns, c.noNetwork)
		}
	}
}
