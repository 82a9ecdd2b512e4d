package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// e2ePolicy refuses every exec, and a privileged container with the
// policy's reason.
const e2ePolicy = `package agent_policy

default ExecProcessRequest := false

default CreateContainerRequest := true

CreateContainerRequest := false if {
	"CAP_SYS_ADMIN" in input.OCI.Process.Capabilities.Bounding
	print("privileged containers are not allowed here")
}
`

func writePolicy(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.rego")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyVC: `vc run --policy` boots the policy image, whose agent
// enforces the policy: the container runs, `vc exec` into it fails with
// the agent's denial, a privileged container is refused with the
// policy's reason, and a malformed policy fails the run naming its line,
// leaving nothing behind.
func TestPolicyVC(t *testing.T) {
	pol := writePolicy(t, e2ePolicy)
	id := "e2e-policy"
	out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "--policy", pol, "busybox", "--", "sh", "-c", "echo started; sleep 1000")
	if code != 0 {
		t.Fatalf("run -d --policy: exit %d stdout %q stderr %q", code, out, errOut)
	}
	t.Cleanup(func() {
		vcRun(t, nil, "rm", "-f", id)
		noLeftovers(t, id)
	})
	waitFor(t, func() bool { o, _, _ := vcRun(t, nil, "logs", id); return strings.Contains(o, "started") }, "logs show output")
	_, errOut, code = vcRun(t, nil, "exec", id, "true")
	if code == 0 || !strings.Contains(errOut, "ExecProcess: denied by the agent policy (rule ExecProcessRequest)") {
		t.Fatalf("exec under a policy denying it: exit %d stderr %q", code, errOut)
	}
	// The container still runs: a denial changes nothing.
	if o, _, _ := vcRun(t, nil, "ps"); !strings.Contains(o, id) || !strings.Contains(o, "running") {
		t.Fatalf("after the denied exec, ps:\n%s", o)
	}

	_, errOut, code = vcRun(t, nil, "run", "--rm", "--name", id+"-priv", "--privileged", "--policy", pol, "busybox", "--", "true")
	if code == 0 || !strings.Contains(errOut, "rule CreateContainerRequest): privileged containers are not allowed here") {
		t.Errorf("privileged run under the policy: exit %d stderr %q", code, errOut)
	}
	noLeftovers(t, id+"-priv")

	bad := writePolicy(t, "package agent_policy\n\ndefault ExecProcessRequest := false\nExecProcessRequest if {\n\tinput.process ==\n}\n")
	_, errOut, code = vcRun(t, nil, "run", "--rm", "--name", id+"-bad", "--policy", bad, "busybox", "--", "true")
	if code == 0 || !strings.Contains(errOut, "line 6") {
		t.Errorf("run with a malformed policy: exit %d stderr %q, want the error's line", code, errOut)
	}
	noLeftovers(t, id+"-bad")
}

// TestPolicyLibrary: a sandbox created with SandboxConfig.Policy on the
// policy image runs containers and execs what the policy allows;
// Sandbox.SetPolicy after boot tightens it; the default image's agent
// refuses a policy, and CreateSandbox then leaves nothing behind.
func TestPolicyLibrary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	// vc image build (setup) built it beside the default image.
	img, err := guestimage.Load(filepath.Join(guestconfig.ImageRoot(dataRoot), "current-policy"))
	if err != nil {
		t.Fatalf("the policy image (vc image build builds it): %v", err)
	}
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	allowAll := "package agent_policy\n\ndefault ExecProcessRequest := true\n"
	s := createSandbox(ctx, t, vc.SandboxConfig{
		ID: "e2e-policy-lib", StateRoot: stateRoot, Policy: allowAll,
		Hypervisor: vc.HypervisorConfig{Kernel: img.Kernel, Initrd: img.Initrd, Accel: "tcg", MemoryMiB: 256},
	})
	spec := oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create: %v", err)
	}
	c := s.Container("c")
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	exec := func(execID string) error {
		p := *spec.Process
		p.Args = []string{"true"}
		if err := c.Exec(ctx, execID, &p); err != nil {
			return err
		}
		code, err := c.WaitProcess(ctx, execID)
		if err == nil && code != 0 {
			t.Fatalf("exec %s: status %d", execID, code)
		}
		return err
	}
	if err := exec("allowed"); err != nil {
		t.Fatalf("exec under a policy allowing it: %v", err)
	}
	if err := s.SetPolicy(ctx, e2ePolicy); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
	err = exec("denied")
	if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "rule ExecProcessRequest") {
		t.Fatalf("exec after SetPolicy tightened it: %v, want PermissionDenied naming the rule", err)
	}
	// The default image's agent has no engine: a policy fails the
	// sandbox's creation, and nothing of it stays.
	_, err = vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: "e2e-policy-noengine", StateRoot: stateRoot, Policy: allowAll,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", MemoryMiB: 256},
	})
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "vc-agent-policy") {
		t.Errorf("a policy on the default image: %v, want NotImplemented naming vc-agent-policy", err)
	}
	noLeftovers(t, "e2e-policy-noengine")
}
