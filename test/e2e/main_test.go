// Package e2e boots real VMs (QEMU under TCG, Debian's kernel, the real
// vc-agent) through the vc CLI and the pkg/vc library.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/vc"
)

var (
	vcBin     string // the vc CLI
	dataRoot  string // images and root filesystems (kept between runs)
	stateRoot string // sandbox state of this run
	kernel    string // the current guest image
	initrd    string
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// Fail, not pass with nothing run: a suite that cannot run here
		// says so loudly.
		fmt.Fprintln(os.Stderr, "e2e: FAIL: needs root (VMs, mounts, namespaces); run as root or with `make test`")
		os.Exit(1)
	}
	code, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		os.Exit(1)
	}
	code = m.Run()
	sweep()
	os.Exit(code)
}

// sweep removes whatever a failed test left under this run's state root:
// VMs, mounts, state.
func sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ents, _ := os.ReadDir(stateRoot)
	for _, e := range ents {
		if e.IsDir() {
			if out, err := vcCmd(ctx, nil, "rm", "-f", e.Name()); err != nil {
				fmt.Fprintf(os.Stderr, "e2e sweep: vc rm -f %s: %v\n%s", e.Name(), err, out)
			}
		}
	}
	if err := os.Remove(stateRoot); err != nil {
		fmt.Fprintf(os.Stderr, "e2e sweep: %v\n", err)
	}
}

func setup() (int, error) {
	root := testutil.RepoRoot()
	bin := filepath.Join(root, "bin")
	// make test builds these; build them when run on their own.
	for _, c := range [][]string{
		{"go", "build", "-o", filepath.Join(bin, "vc"), "./cmd/vc"},
	} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("%v: %v\n%s", c, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(bin, "vc-agent")); err != nil || os.Getenv("VC_AGENT_BIN") == "" {
		cmd := exec.Command("make", "agent")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("make agent: %v\n%s", err, out)
		}
	}
	vcBin = filepath.Join(bin, "vc")
	dataRoot = envOr("VC_TEST_DATA_ROOT", "/var/lib/vc-test")
	var err error
	if stateRoot, err = os.MkdirTemp("", "vc-e2e-state-"); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := vcCmd(ctx, nil, "image", "build")
	if err != nil {
		return 0, fmt.Errorf("vc image build: %v\n%s", err, out)
	}
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "kernel" {
			kernel = f[1]
		}
		if len(f) >= 2 && f[0] == "initrd" {
			initrd = f[1]
		}
	}
	if kernel == "" || initrd == "" {
		return 0, fmt.Errorf("vc image build printed no kernel/initrd:\n%s", out)
	}
	return 0, nil
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// vcCmd runs the vc CLI with this run's roots and returns its combined
// output.
func vcCmd(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, vcBin, append([]string{"--state-root", stateRoot, "--data-root", dataRoot}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// vcRun is vcCmd with separate stdout and stderr, and the exit code.
func vcRun(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return vcWith(t, dataRoot, stdin, args...)
}

// vcWith runs the vc CLI with data root dr and stdin (none if nil).
func vcWith(t *testing.T, dr string, stdin []byte, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vcBin, append([]string{"--state-root", stateRoot, "--data-root", dr}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("vc %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// noLeftovers fails the test if a VM process or state of sandbox id is
// still there.
func noLeftovers(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", "qemu-system.*"+id).Output()
		_, statErr := os.Stat(filepath.Join(stateRoot, id))
		if len(bytes.TrimSpace(out)) == 0 && os.IsNotExist(statErr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s left behind: qemu pids %q, state dir err %v", id, out, statErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newSandbox boots sandbox id through the library (netns: the network
// namespace it joins, or none); the test's cleanup stops and deletes it
// and checks that nothing is left.
func newSandbox(ctx context.Context, t *testing.T, id, netns string) *vc.Sandbox {
	t.Helper()
	return createSandbox(ctx, t, vc.SandboxConfig{
		ID: id, StateRoot: stateRoot, NetNS: netns,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
	})
}

// createSandbox creates the sandbox cfg describes; at the test's end it
// is stopped and deleted, and nothing of it may be left.
func createSandbox(ctx context.Context, t *testing.T, cfg vc.SandboxConfig) *vc.Sandbox {
	t.Helper()
	id := cfg.ID
	s, err := vc.CreateSandbox(ctx, cfg)
	if err != nil {
		t.Fatalf("sandbox %s: %v", id, err)
	}
	t.Cleanup(func() {
		s.Stop(context.Background(), 5*time.Second)
		// (A test may have deleted it.)
		if err := s.Delete(context.Background()); err != nil && !errdefs.IsNotFound(err) {
			t.Errorf("delete: %v", err)
		}
		noLeftovers(t, id)
	})
	return s
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and a reader.
type syncBuffer = testutil.SyncBuffer
