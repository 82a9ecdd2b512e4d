//go:build policy

package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	pb "github.com/virtcontainers/vc/api/agent"
)

const denyExec = `package agent_policy

default ExecProcessRequest := false

ExecProcessRequest if {
	input.process.Args[0] == "/bin/true"
}

default CreateContainerRequest := true

CreateContainerRequest := false if {
	print("privileged: container", input.container_id, "asks for all capabilities")
	"CAP_SYS_ADMIN" in input.OCI.Process.Capabilities.Bounding
}
`

// A Kata document of the older syntax (rules without "if").
const kataV0 = `package agent_policy

import future.keywords.in

default ExecProcessRequest := false
default ReadStreamRequest := true
default AllowRequestsFailingPolicy := false

ExecProcessRequest {
	input.process.Args[0] == "ls"
}
`

func TestCheck(t *testing.T) {
	ctx := context.Background()
	e, err := Compile(ctx, denyExec)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(args ...string) *pb.ExecProcessRequest {
		return &pb.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", Process: &pb.Process{Args: args}}
	}
	if _, err := e.Check(ctx, RuleFor("ExecProcess", exec("/bin/true")), exec("/bin/true")); err != nil {
		t.Errorf("allowed exec: %v", err)
	}
	_, err = e.Check(ctx, RuleFor("ExecProcess", exec("sh")), exec("sh"))
	var d *Denied
	if !errors.As(err, &d) || d.Rule != "ExecProcessRequest" {
		t.Fatalf("exec sh: %v, want a denial by ExecProcessRequest", err)
	}
	// A rule the document does not define allows.
	if _, err := e.Check(ctx, "StatsContainerRequest", &pb.StatsContainerRequest{ContainerId: "c1"}); err != nil {
		t.Errorf("undefined rule: %v", err)
	}
	// The OCI spec is input.OCI, with its own field names; print output
	// is the reason.
	priv := &pb.CreateContainerRequest{ContainerId: "c2", OCI: &pb.Spec{Process: &pb.Process{Capabilities: &pb.LinuxCapabilities{Bounding: []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}}}}}
	_, err = e.Check(ctx, RuleFor("CreateContainer", priv), priv)
	if !errors.As(err, &d) || d.Rule != "CreateContainerRequest" || !strings.Contains(err.Error(), "privileged: container c2") {
		t.Fatalf("privileged container: %v", err)
	}
	plain := &pb.CreateContainerRequest{ContainerId: "c3", OCI: &pb.Spec{Process: &pb.Process{Capabilities: &pb.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}}}}
	if _, err := e.Check(ctx, "CreateContainerRequest", plain); err != nil {
		t.Errorf("unprivileged container: %v", err)
	}
}

func TestCompileKataV0(t *testing.T) {
	ctx := context.Background()
	e, err := Compile(ctx, kataV0)
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.ExecProcessRequest{Process: &pb.Process{Args: []string{"ls"}}}
	if _, err := e.Check(ctx, "ExecProcessRequest", req); err != nil {
		t.Errorf("ls: %v", err)
	}
	req.Process.Args = []string{"sh"}
	if _, err := e.Check(ctx, "ExecProcessRequest", req); err == nil {
		t.Errorf("sh allowed")
	}
}

func TestPermissive(t *testing.T) {
	ctx := context.Background()
	e, err := Compile(ctx, "package agent_policy\nAllowRequestsFailingPolicy := true\ndefault ExecProcessRequest := false\n")
	if err != nil {
		t.Fatal(err)
	}
	perm, err := e.Check(ctx, "ExecProcessRequest", &pb.ExecProcessRequest{})
	if !e.Permissive() || !perm || err == nil || !strings.Contains(err.Error(), "rule ExecProcessRequest): its default is false") {
		t.Fatalf("permissive %v, %v, %v: want a denial reported as allowed", e.Permissive(), perm, err)
	}
}

func TestCompileErrors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ name, doc, want string }{
		{"syntax", "package agent_policy\n\ndefault ExecProcessRequest := false\nExecProcessRequest if {\n\tinput.x ==\n}\n", "line 6"},
		{"package", "package other\ndefault ExecProcessRequest := false\n", "line 1: package other, want package agent_policy"},
		{"unsafe", "package agent_policy\n\nExecProcessRequest if {\n\tx == 1\n}\n", "line 4"},
		{"size", strings.Repeat("#", MaxSize+1), "more than"},
	} {
		_, err := Compile(ctx, c.doc)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid naming %q", c.name, err, c.want)
		}
	}
}

func TestRuleFor(t *testing.T) {
	if got := RuleFor("ReadStdout", &pb.ReadStreamRequest{}); got != "ReadStreamRequest" {
		t.Errorf("ReadStdout: %s", got)
	}
}

func BenchmarkCheck(b *testing.B) {
	ctx := context.Background()
	e, err := Compile(ctx, denyExec)
	if err != nil {
		b.Fatal(err)
	}
	req := &pb.ExecProcessRequest{ContainerId: "c1", Process: &pb.Process{Args: []string{"/bin/true"}, Env: []string{"PATH=/bin"}, Cwd: "/"}}
	for b.Loop() {
		if _, err := e.Check(ctx, "ExecProcessRequest", req); err != nil {
			b.Fatal(err)
		}
	}
}
