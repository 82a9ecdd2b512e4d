// Package runtime drives bin/vc-runtime as runc's integration tests drive
// runc: bundles on disk, create/start/state/kill/delete and run, exit
// codes, state transitions, the container's output through the fds the
// runtime was given, and nothing left behind. Its containers boot real
// VMs (QEMU under TCG); it needs root.
package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/oci"
)

var (
	runtimeBin string // vc-runtime, beside the agent under test in binDir
	binDir     string
	agentBin   string
	dataRoot   string // guest images and the busybox root (kept between runs)
	stateRoot  string // the runtime's --root of this run
	busybox    string // the busybox root filesystem
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// Fail, not pass with nothing run: a suite that cannot run here
		// says so loudly.
		fmt.Fprintln(os.Stderr, "test/runtime: FAIL: needs root (VMs, mounts, namespaces); run as root or with `make test`")
		os.Exit(1)
	}
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "test/runtime setup: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	sweep()
	os.Exit(code)
}

func setup() error {
	var err error
	if agentBin = os.Getenv("VC_AGENT_BIN"); agentBin == "" {
		if agentBin, err = testutil.Build("vc-agent", "./cmd/vc-agent", []string{"CGO_ENABLED=1"},
			"-tags", "seccomp netgo osusergo", "-ldflags", `-extldflags "-static"`); err != nil {
			return fmt.Errorf("build vc-agent: %w", err)
		}
	}
	built, err := testutil.Build("vc-runtime", "./cmd/vc-runtime", nil)
	if err != nil {
		return fmt.Errorf("build vc-runtime: %w", err)
	}
	// vc-runtime finds its agent beside itself when $VC_AGENT does not
	// reach it (podman does not pass its environment on to the runtime):
	// a copy of it in a directory of this run, beside the agent under
	// test.
	if binDir, err = os.MkdirTemp("", "vc-rt-bin-"); err != nil {
		return err
	}
	runtimeBin = filepath.Join(binDir, "vc-runtime")
	b, err := os.ReadFile(built)
	if err != nil {
		return err
	}
	if err := os.WriteFile(runtimeBin, b, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(agentBin, filepath.Join(binDir, "vc-agent")); err != nil {
		return err
	}
	vcBin, err := testutil.Build("vc", "./cmd/vc", nil)
	if err != nil {
		return fmt.Errorf("build vc: %w", err)
	}
	dataRoot = envOr("VC_TEST_DATA_ROOT", "/var/lib/vc-test")
	// The guest image of this agent, made current under the data root,
	// where vc-runtime finds it.
	cmd := exec.Command(vcBin, "--data-root", dataRoot, "image", "build")
	cmd.Env = append(os.Environ(), "VC_AGENT="+agentBin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("vc image build: %v\n%s", err, out)
	}
	if busybox, err = rootfs.Busybox(filepath.Join(dataRoot, "rootfs")); err != nil {
		return err
	}
	stateRoot, err = os.MkdirTemp("", "vc-rt-")
	return err
}

// sweep removes whatever a failed test left.
func sweep() {
	stopDockerd()
	ents, _ := os.ReadDir(stateRoot)
	for _, e := range ents {
		if out, code := rt(nil, "delete", "--force", e.Name()); code != 0 {
			fmt.Fprintf(os.Stderr, "sweep: delete --force %s: %s\n", e.Name(), out)
		}
	}
	if err := os.Remove(stateRoot); err != nil {
		fmt.Fprintf(os.Stderr, "sweep: %v\n", err)
	}
	os.RemoveAll(binDir)
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// runtimeCmd is vc-runtime with this run's root and guest image.
func runtimeCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, runtimeBin, append([]string{"--root", stateRoot}, args...)...)
	cmd.Env = append(os.Environ(), "VC_AGENT="+agentBin, "VC_DATA_ROOT="+dataRoot, "VC_ACCEL=tcg")
	return cmd
}

// rt runs vc-runtime with stdin and returns its combined output and exit
// code (-1 if it did not run).
func rt(stdin []byte, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

// mustRT is rt that fails the test unless the exit code is 0.
func mustRT(t *testing.T, args ...string) string {
	t.Helper()
	out, code := rt(nil, args...)
	if code != 0 {
		t.Fatalf("vc-runtime %q: exit %d: %s", args, code, out)
	}
	return out
}

// bundle writes a bundle running args in busybox, with change applied to
// its spec.
func bundle(t *testing.T, args []string, change func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	spec := oci.DefaultSpec(args, nil, "/", false)
	spec.Root.Path = busybox
	if change != nil {
		change(spec)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type state struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
	Rootfs string `json:"rootfs"`
}

func getState(t *testing.T, id string) state {
	t.Helper()
	var s state
	out := mustRT(t, "state", id)
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("state %s: %q: %v", id, out, err)
	}
	return s
}

// waitStatus waits until container id's status is want.
func waitStatus(t *testing.T, id, want string) state {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := getState(t, id)
		if s.Status == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: status %q, want %q", id, s.Status, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noLeftovers fails the test if anything of container id is left: its
// directory, or a process (QEMU, passt) whose command line names it.
func noLeftovers(t *testing.T, id string) {
	t.Helper()
	dir := filepath.Join(stateRoot, id) + "/"
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := proc.Find(func(args []string) bool { return strings.Contains(strings.Join(args, " "), dir) })
		_, statErr := os.Stat(dir)
		if len(pids) == 0 && os.IsNotExist(statErr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s left behind: processes %v, state dir: %v", id, pids, statErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expectFail runs vc-runtime and wants exit code 1 with msg in its output.
func expectFail(t *testing.T, msg string, args ...string) {
	t.Helper()
	out, code := rt(nil, args...)
	if code != 1 || !strings.Contains(out, msg) {
		t.Errorf("vc-runtime %q: exit %d, %q; want 1 and %q", args, code, out, msg)
	}
}

// waitLogs polls logs (what's command's output) for up to a minute until
// it contains want, and fails the test with the last output otherwise.
func waitLogs(t *testing.T, what string, logs func() string, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out := logs()
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q", what, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
