package agent_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// policyExecTrueOnly allows exec of /bin/true only, and refuses a
// container holding CAP_SYS_ADMIN (a privileged one), saying why.
const policyExecTrueOnly = `package agent_policy

default ExecProcessRequest := false

ExecProcessRequest if {
	input.process.Args == ["/bin/true"]
}

default CreateContainerRequest := true

CreateContainerRequest := false if {
	"CAP_SYS_ADMIN" in input.OCI.Process.Capabilities.Bounding
	print("container", input.container_id, "is privileged")
}
`

// policyNoExec refuses every exec and any further SetPolicy.
const policyNoExec = `package agent_policy

default ExecProcessRequest := false
default SetPolicyRequest := false
`

// TestPolicyEnforced runs vc-agent-policy with real containers: each
// request is checked against the policy SetPolicy gave, a denial names
// the RPC and the rule (PermissionDenied), what the policy does not
// decide is allowed, a later SetPolicy tightens it, a policy can forbid
// its own replacement, and a malformed one is refused with its line.
func TestPolicyEnforced(t *testing.T) {
	e := &env{t: t, a: testutil.StartPolicyAgent(t)}
	t.Cleanup(e.cleanup)
	ctx := miscCtx(t)
	rootfs := testutil.BusyboxRootfs(t)

	// No policy: everything goes.
	id := newID("pol")
	e.run(id, spec(rootfs, "sleep", "1000"))
	e.exec(id, "before", false, "sh", "-c", "exit 0")
	if st := e.wait(id, "before"); st != 0 {
		t.Fatalf("exec before any policy: status %d", st)
	}

	// A malformed policy is refused naming its line, and changes nothing.
	_, err := e.a.Svc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: "package agent_policy\n\nExecProcessRequest if {\n\tinput.process ==\n}\n"})
	miscWant(t, "a malformed policy", err, codes.InvalidArgument, "line 5")

	if _, err := e.a.Svc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: policyExecTrueOnly}); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
	e.exec(id, "true", false, "/bin/true")
	if st := e.wait(id, "true"); st != 0 {
		t.Fatalf("exec /bin/true: status %d", st)
	}
	_, err = e.a.Svc.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: id, ExecId: "sh",
		Process: &pb.Process{Args: []string{"sh"}, Env: []string{pathEnv}, Cwd: "/", User: &pb.User{}}})
	miscWant(t, "exec sh", err, codes.PermissionDenied, "ExecProcess: denied by the agent policy (rule ExecProcessRequest)")
	// Not started: a denied request never reached its handler.
	if _, err := e.a.Svc.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: id, ExecId: "sh"}); err == nil {
		t.Error("the denied exec has a process to wait for")
	}

	// A privileged container is refused with the policy's reason; an
	// unprivileged one is created (a rule's other value).
	priv := spec(rootfs, "true")
	caps := append(append([]string{}, defaultCaps...), "CAP_SYS_ADMIN")
	priv.Process.Capabilities = &pb.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	privID := newID("priv")
	err = e.tryCreate(&pb.CreateContainerRequest{ContainerId: privID, ExecId: privID, OCI: priv})
	miscWant(t, "a privileged container", err, codes.PermissionDenied, "rule CreateContainerRequest): container "+privID+" is privileged")
	e.create(newID("plain"), spec(rootfs, "true"))

	// What the policy does not decide (StatsContainer) is allowed.
	if _, err := e.a.Svc.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("StatsContainer, no rule: %v", err)
	}

	// Tightened: no exec at all, and no more SetPolicy.
	if _, err := e.a.Svc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: policyNoExec}); err != nil {
		t.Fatalf("SetPolicy (tighter): %v", err)
	}
	_, err = e.a.Svc.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: id, ExecId: "true2",
		Process: &pb.Process{Args: []string{"/bin/true"}, Env: []string{pathEnv}, Cwd: "/", User: &pb.User{}}})
	miscWant(t, "exec /bin/true under the tighter policy", err, codes.PermissionDenied, "rule ExecProcessRequest")
	_, err = e.a.Svc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: policyExecTrueOnly})
	miscWant(t, "SetPolicy forbidden by the policy", err, codes.PermissionDenied, "SetPolicy: denied by the agent policy (rule SetPolicyRequest)")

	// Health is never the policy's: the host's liveness check goes on.
	if _, err := e.a.Health.Check(ctx, &pb.CheckRequest{}); err != nil {
		t.Errorf("Health.Check under a policy: %v", err)
	}
	// The metrics say which policy holds.
	m, err := e.a.Svc.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(policyNoExec))
	if want := `vc_agent_policy_info{sha256="` + hex.EncodeToString(sum[:]) + `"} 1`; !strings.Contains(m.Metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
	e.signal(id, "", 9)
	e.wait(id, id)
}

// TestPolicyWithoutEngine: the default vc-agent has no engine (OPA would
// double every guest's agent): SetPolicy is refused as not implemented,
// saying where the engine is, never accepted and ignored.
func TestPolicyWithoutEngine(t *testing.T) {
	a := testutil.StartAgent(t)
	_, err := a.Svc.SetPolicy(miscCtx(t), &pb.SetPolicyRequest{Policy: policyNoExec})
	miscWant(t, "SetPolicy on vc-agent", err, codes.Unimplemented, "vc-agent-policy")
}
