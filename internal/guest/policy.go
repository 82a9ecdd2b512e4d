package guest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"

	"github.com/virtcontainers/vc/internal/guest/policy"
)

// maxPolicy bounds the size of a policy document.
const maxPolicy = policy.MaxSize

// policyState is the policy the host set last (package policy compiles
// and evaluates it). No policy allows every request.
type policyState struct {
	engine atomic.Pointer[policy.Engine]
}

// setPolicy replaces the policy; an empty document removes it. The
// SetPolicy request itself was checked against the policy it replaces
// (the interceptor), so a policy can forbid being replaced.
func (s *miscState) setPolicy(ctx context.Context, a *Agent, doc string) error {
	if len(doc) > maxPolicy {
		return invalid("policy", "%d bytes is more than the %d allowed", len(doc), maxPolicy)
	}
	if strings.TrimSpace(doc) == "" {
		s.policy.engine.Store(nil)
		a.log.Info("policy removed: every request is allowed")
		return nil
	}
	e, err := policy.Compile(ctx, doc)
	if errors.Is(err, policy.ErrNoEngine) {
		return fmt.Errorf("SetPolicy: %w: %w", err, errdefs.ErrNotImplemented)
	}
	if err != nil {
		return invalid("policy", "%v", err)
	}
	s.policy.engine.Store(e)
	a.log.Info("policy set", "sha256", e.SHA256(), "bytes", e.Size(), "allow_requests_failing_policy", e.Permissive())
	return nil
}

// currentPolicy returns the policy's SHA-256 and size, or ok false when
// none is set.
func (s *miscState) currentPolicy() (sum string, size int, ok bool) {
	e := s.policy.engine.Load()
	if e == nil {
		return "", 0, false
	}
	return e.SHA256(), e.Size(), true
}

// policyExempt are the services no policy decides: the host's liveness
// check must keep working whatever the policy says.
var policyExempt = map[string]bool{"grpc.Health": true}

// policyUnmarshaler wraps a call's unmarshaler so that the request, once
// decoded, is checked against the policy before its handler runs.
func (a *Agent) policyUnmarshaler(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo) ttrpc.Unmarshaler {
	e := a.misc.policy.engine.Load()
	if e == nil {
		return u
	}
	service, method := splitMethod(info.FullMethod)
	if policyExempt[service] {
		return u
	}
	return func(v any) error {
		if err := u(v); err != nil {
			return err
		}
		req, ok := v.(proto.Message)
		if !ok {
			return nil
		}
		rule := policy.RuleFor(method, req)
		permissive, err := e.Check(ctx, rule, req)
		if err == nil {
			return nil
		}
		var d *policy.Denied
		if !errors.As(err, &d) {
			return fmt.Errorf("%s: the agent policy: %w", method, err)
		}
		if permissive {
			a.log.Warn("policy denial allowed (AllowRequestsFailingPolicy)", "method", method, "rule", rule, "reasons", d.Reasons)
			return nil
		}
		a.log.Info("policy denied a request", "method", method, "rule", rule, "reasons", d.Reasons)
		return fmt.Errorf("%s: %w: %w", method, d, errdefs.ErrPermissionDenied)
	}
}

// splitMethod splits "/service/method".
func splitMethod(full string) (service, method string) {
	full = strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[:i], full[i+1:]
	}
	return "", full
}
