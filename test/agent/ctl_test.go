package agent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/internal/guest/network/netnstest"
	"github.com/virtcontainers/vc/internal/testutil"
)

// buildCtl builds vc-agent-ctl into a temporary directory.
func buildCtl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vc-agent-ctl")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/vc-agent-ctl")
	cmd.Dir = testutil.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vc-agent-ctl: %v\n%s", err, out)
	}
	return bin
}

// runCtl runs vc-agent-ctl and returns its exit code and outputs.
func runCtl(t *testing.T, bin, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "VC_AGENT_ADDR=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errb.String()
	default:
		t.Fatalf("run vc-agent-ctl: %v", err)
		return -1, "", ""
	}
}

func TestAgentCtl(t *testing.T) {
	bin := buildCtl(t)
	testutil.AgentBinary(t) // built outside the namespace
	// The agent runs in a network namespace of the test's own, so that
	// the network RPCs below cannot touch the host's.
	ns := netnstest.New(t)
	var a *testutil.Agent
	netnstest.Do(t, ns, func() { a = testutil.StartAgent(t) })
	addr := "unix://" + a.Socket

	code, out, errs := runCtl(t, bin, "", "-addr", addr, "call", "Check")
	if code != 0 {
		t.Fatalf("call Check: exit %d: %s", code, errs)
	}
	var health struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &health); err != nil || health.Status != "SERVING" {
		t.Fatalf("call Check printed %q (%v), want status SERVING", out, err)
	}

	code, out, errs = runCtl(t, bin, `{"service":"agent"}`, "-addr", addr, "call", "grpc.Health.Version", "-")
	var version struct {
		AgentVersion string `json:"agentVersion"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &version) != nil || version.AgentVersion == "" {
		t.Fatalf("call Version: exit %d, out %q, err %q", code, out, errs)
	}

	// An AgentService RPC with a request, answered with an error.
	code, _, errs = runCtl(t, bin, "", "-addr", addr, "call", "UpdateRoutes", `{"routes":{"Routes":[{"dest":"10.0.0.0/33","device":"lo"}]}}`)
	if code != 1 || !strings.Contains(errs, "InvalidArgument") || !strings.Contains(errs, "routes.Routes[0].dest") {
		t.Errorf("bad UpdateRoutes: exit %d, stderr %q", code, errs)
	}

	code, out, errs = runCtl(t, bin, "", "-addr", addr, "call", "ListInterfaces")
	var ifs map[string][]json.RawMessage
	if code != 0 || json.Unmarshal([]byte(out), &ifs) != nil || ifs["Interfaces"] == nil || len(ifs["Interfaces"]) != 0 {
		t.Errorf("ListInterfaces in an empty namespace: exit %d, out %q, stderr %q", code, out, errs)
	}

	code, _, errs = runCtl(t, bin, "", "-addr", addr, "call", "NoSuchMethod")
	if code == 0 || !strings.Contains(errs, `unknown method "NoSuchMethod"`) {
		t.Errorf("unknown method: exit %d, stderr %q", code, errs)
	}

	code, _, errs = runCtl(t, bin, "", "-addr", "vsock://3", "call", "Check")
	if code == 0 || !strings.Contains(errs, `"vsock://3"`) {
		t.Errorf("bad address: exit %d, stderr %q", code, errs)
	}

	code, out, errs = runCtl(t, bin, "", "list")
	if code != 0 || !strings.Contains(out, "grpc.AgentService.UpdateInterface(grpc.UpdateInterfaceRequest) returns (types.Interface)") {
		t.Errorf("list: exit %d, stderr %q, out:\n%s", code, errs, out)
	}
}
