package containerd_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

// TestVCPolicy: the shim's policy_file is enforced by the agent of every
// sandbox (booted from policy_initrd, vc-agent-policy's): `ctr task exec`
// is refused with the agent's denial, naming the RPC and the rule, while
// the task runs on; an allowlisted io.virtcontainers.policy annotation
// replaces the configuration's policy for its sandbox.
func TestVCPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := guestimage.Build(ctx, guestimage.Options{Agent: testutil.PolicyAgentBinary(t), Root: filepath.Join(dataRoot(), "images")})
	if err != nil {
		t.Fatalf("policy image: %v", err)
	}
	pol := filepath.Join(t.TempDir(), "policy.rego")
	if err := os.WriteFile(pol, []byte("package agent_policy\n\ndefault ExecProcessRequest := false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startVC(t, fmt.Sprintf("policy_file = %q\npolicy_initrd = %q\nenable_annotations = [\"policy\"]", pol, img.Initrd))

	exec := func(id string) (string, error) {
		return d.CtrErr(ctx, "task", "exec", "--exec-id", "e-"+id, id, "echo", "exec-ok")
	}
	run := func(id string, opts ...string) {
		t.Helper()
		d.Ctr(t, append(append([]string{"run", "-d", "--runtime", containerd.VCRuntime}, opts...), images.BusyboxRef, id, "sleep", "600")...)
		t.Cleanup(func() {
			d.CtrErr(context.Background(), "task", "kill", "-s", "SIGKILL", id)
			time.Sleep(time.Second)
			d.CtrErr(context.Background(), "task", "rm", "-f", id)
			d.CtrErr(context.Background(), "container", "rm", id)
		})
	}

	run("vc-pol")
	out, err := exec("vc-pol")
	if err == nil || !strings.Contains(err.Error(), "ExecProcess: denied by the agent policy (rule ExecProcessRequest)") {
		t.Fatalf("exec under policy_file: %q, %v; want the agent's denial", out, err)
	}
	if ls := d.Ctr(t, "task", "ls"); !strings.Contains(ls, "RUNNING") {
		t.Errorf("after the denied exec: %s", ls)
	}

	allow := base64.StdEncoding.EncodeToString([]byte("package agent_policy\n\ndefault ExecProcessRequest := true\n"))
	run("vc-pol-ann", "--annotation", "io.virtcontainers.policy="+allow)
	if out, err := exec("vc-pol-ann"); err != nil || strings.TrimSpace(out) != "exec-ok" {
		t.Fatalf("exec under the annotation's policy: %q, %v", out, err)
	}
}
