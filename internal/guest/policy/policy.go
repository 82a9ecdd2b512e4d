// Package policy evaluates agent requests against a Rego policy document
// (Open Policy Agent), with the rule names of Kata Containers' agent
// policy, so that a Kata policy document works unchanged:
//
//   - the document's package is agent_policy;
//   - a request is allowed when the rule named after its request type
//     (ExecProcessRequest, CreateContainerRequest, ...) evaluates to true;
//     the input is the request as JSON with the protocol's field names
//     (container_id, OCI, process.Args, ...);
//   - a rule the document does not define allows its requests: denying by
//     default is the document's choice (default ExecProcessRequest :=
//     false), never the engine's;
//   - AllowRequestsFailingPolicy := true logs denials and allows them (for
//     debugging a policy, as in Kata).
//
// A document is compiled once, when it is set; its errors name their line.
package policy

import (
	"errors"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Package is the Rego package a document must declare.
const Package = "agent_policy"

// MaxSize bounds a document.
const MaxSize = 1 << 20

// ErrInvalid is wrapped by Compile's errors about the document.
var ErrInvalid = errors.New("invalid policy")

// ErrNoEngine is Compile's error in an agent built without the engine
// (the default vc-agent: OPA would double its size, and the memory of
// every guest; the policy image's vc-agent-policy has it).
var ErrNoEngine = errors.New("this vc-agent has no policy engine: boot the sandbox from the policy image (vc-agent-policy), as a sandbox given a policy at creation does")

// RuleFor names the rule that decides req: its request type's name
// (ReadStdout and ReadStderr share ReadStreamRequest, as in Kata), or
// method+"Request" for a request of a shared well-known type.
func RuleFor(method string, req proto.Message) string {
	d := req.ProtoReflect().Descriptor()
	if strings.HasPrefix(string(d.FullName()), "google.protobuf.") {
		return method + "Request"
	}
	return string(d.Name())
}

// Denied is the error of a denied request.
type Denied struct {
	Rule    string
	Reasons []string
}

func (d *Denied) Error() string {
	s := "denied by the agent policy (rule " + d.Rule + ")"
	if len(d.Reasons) > 0 {
		s += ": " + strings.Join(d.Reasons, "; ")
	}
	return s
}
