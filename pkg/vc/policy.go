package vc

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
)

// MaxPolicySize bounds an agent policy document (the agent's own bound).
const MaxPolicySize = 1 << 20

// validatePolicy checks SandboxConfig.Policy's size: its Rego is compiled
// by the agent, which names the line of an error.
func validatePolicy(doc string) error {
	if len(doc) > MaxPolicySize {
		return fmt.Errorf("policy: %d bytes is more than the %d allowed: %w", len(doc), MaxPolicySize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// setPolicy gives the agent the policy it enforces from then on.
func setPolicy(ctx context.Context, svc pb.AgentServiceService, doc string) error {
	if _, err := svc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: doc}); err != nil {
		return fmt.Errorf("agent policy: %w", err)
	}
	return nil
}

// SetPolicy replaces the policy the sandbox's agent enforces (a Rego
// document, docs/security.md); an empty one removes it. The agent checks
// the request against the policy it replaces: a policy can forbid its
// own replacement. The sandbox must run the policy image
// (SandboxConfig.Policy at creation picks it; the default agent refuses).
func (s *Sandbox) SetPolicy(ctx context.Context, doc string) error {
	if err := validatePolicy(doc); err != nil {
		return err
	}
	if err := s.running(); err != nil {
		return err
	}
	if err := setPolicy(ctx, s.agent, doc); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	return nil
}
