// Package testutil runs the real vc-agent on the host for tests: as PID 1
// of its own mount and pid namespaces, serving on a unix socket, with
// busybox root filesystems built from Debian's busybox-static.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testenv"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// agentBuild is an agent binary built once per test binary.
type agentBuild struct {
	once sync.Once
	path string
	err  error
}

var agentBuilds = map[string]*agentBuild{"vc-agent": {}, "vc-agent-policy": {}}

// agentTags are the build tags of each agent binary.
var agentTags = map[string]string{"vc-agent": "seccomp netgo osusergo", "vc-agent-policy": "seccomp netgo osusergo policy"}

// AgentBinary builds the static vc-agent once per test binary and returns
// its path (bin/test/vc-agent, see Build). VC_AGENT_BIN points at a
// prebuilt one instead (make test sets it).
func AgentBinary(t testing.TB) string {
	t.Helper()
	return agentBinary(t, "vc-agent")
}

// PolicyAgentBinary is AgentBinary's vc-agent-policy (the agent built
// with the policy engine, -tags policy): beside VC_AGENT_BIN when that is
// set (make builds both), built once otherwise.
func PolicyAgentBinary(t testing.TB) string {
	t.Helper()
	return agentBinary(t, "vc-agent-policy")
}

func agentBinary(t testing.TB, name string) string {
	t.Helper()
	b := agentBuilds[name]
	b.once.Do(func() {
		if p := os.Getenv("VC_AGENT_BIN"); p != "" {
			b.path = filepath.Join(filepath.Dir(p), name)
			if name == "vc-agent" {
				b.path = p
			}
			if _, err := os.Stat(b.path); err != nil {
				b.err = fmt.Errorf("VC_AGENT_BIN is set and %s is not there (make agent builds both agents): %w", name, err)
			}
			return
		}
		b.path, b.err = Build(name, "./cmd/vc-agent", []string{"CGO_ENABLED=1"},
			"-tags", agentTags[name], "-ldflags", `-extldflags "-static"`)
	})
	if b.err != nil {
		t.Fatalf("build %s: %v", name, b.err)
	}
	return b.path
}

// StartPolicyAgent is StartAgent with vc-agent-policy.
func StartPolicyAgent(t testing.TB, extra ...string) *Agent {
	t.Helper()
	return startAgent(t, PolicyAgentBinary(t), extra...)
}

// Build builds the repository's package pkg (go build with args, env added
// to the environment) into bin/test/name and returns its path. Every test
// binary that builds it replaces that one file atomically, and a path being
// run keeps its file: nothing is left in temporary directories that no test
// would remove.
func Build(name, pkg string, env []string, args ...string) (string, error) {
	dir := filepath.Join(RepoRoot(), "bin", "test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "."+name+"-")
	if err != nil {
		return "", err
	}
	f.Close()
	tmp := f.Name()
	defer os.Remove(tmp)
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", tmp, pkg)...)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &buildError{err: err, out: string(out)}
	}
	out := filepath.Join(dir, name)
	return out, os.Rename(tmp, out)
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// Agent is a running vc-agent with clients connected to it.
type Agent struct {
	Cmd    *exec.Cmd
	Socket string
	Dir    string
	Client *ttrpc.Client
	Svc    pb.AgentServiceService
	Health pb.HealthService
	Log    *bytes.Buffer
	logMu  sync.Mutex
	exited chan struct{}
}

type lockedWriter struct {
	a *Agent
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.a.logMu.Lock()
	defer w.a.logMu.Unlock()
	return w.a.Log.Write(p)
}

// Logs returns what the agent has logged so far.
func (a *Agent) Logs() string {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	return a.Log.String()
}

// Exited is closed when the agent process has ended.
func (a *Agent) Exited() <-chan struct{} { return a.exited }

// RequireRoot skips a test that needs root, saying so.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root: the agent creates namespaces, mounts and cgroups")
	}
}

// StartAgent starts vc-agent in new mount and pid namespaces listening on
// a unix socket, and connects to it. extra flags are appended. The agent
// is killed and its log printed (on failure) at the end of the test.
func StartAgent(t testing.TB, extra ...string) *Agent {
	t.Helper()
	return startAgent(t, AgentBinary(t), extra...)
}

func startAgent(t testing.TB, bin string, extra ...string) *Agent {
	t.Helper()
	RequireRoot(t)
	a, err := Launch(bin, t.TempDir(), extra...)
	if a != nil {
		t.Cleanup(func() {
			a.Stop()
			if t.Failed() {
				t.Logf("agent log:\n%s", a.Logs())
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Launch starts the agent binary bin as StartAgent does, with its files in
// dir, for programs that are not tests (benchmarks). On error the returned
// Agent, if not nil, must still be stopped.
func Launch(bin, dir string, extra ...string) (*Agent, error) {
	sock := filepath.Join(dir, "agent.sock")
	args := append([]string{
		"-unix", sock, "-vsock-port", "0", "-serial", "",
		"-log-level", "debug",
		"-modules", filepath.Join(dir, "no-modules"),
		"-container-root", filepath.Join(dir, "containers"),
		"-sandbox-root", filepath.Join(dir, "sandbox"),
		// Tests mount storages below their temporary directories.
		"-storage-root", os.TempDir(),
	}, extra...)
	a := &Agent{Socket: sock, Dir: dir, Log: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lockedWriter{a}
	cmd.Stderr = lockedWriter{a}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start agent: %w", err)
	}
	a.Cmd = cmd
	go func() {
		cmd.Wait()
		close(a.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	var conn net.Conn
	for {
		var err error
		conn, err = net.Dial("unix", sock)
		if err == nil {
			break
		}
		select {
		case <-a.exited:
			return a, fmt.Errorf("agent exited before listening: %v\n%s", cmd.ProcessState, a.Logs())
		default:
		}
		if time.Now().After(deadline) {
			return a, fmt.Errorf("agent did not listen on %s: %w\n%s", sock, err, a.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.Client = ttrpc.NewClient(conn)
	a.Svc = pb.NewAgentServiceClient(a.Client)
	a.Health = pb.NewHealthClient(a.Client)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Health.Check(ctx, &pb.CheckRequest{}); err != nil {
		return a, fmt.Errorf("health check: %w", err)
	}
	return a, nil
}

// Stop kills the agent and waits for it.
func (a *Agent) Stop() {
	if a.Client != nil {
		a.Client.Close()
	}
	a.Cmd.Process.Kill()
	<-a.exited
}

// BusyboxRootfs makes a root filesystem holding Debian's static busybox
// with a link per applet, /etc/passwd and /etc/group, and returns its path.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := rootfs.BuildBusybox(root); err != nil {
		t.Fatal(err)
	}
	return root
}
