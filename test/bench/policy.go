package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	pb "github.com/virtcontainers/vc/api/agent"
)

func init() {
	register("policy", agentPolicy)
}

// policyCalls is how many StatsContainer calls each figure times.
const policyCalls = 3000

// benchPolicy decides the timed calls with rules that read their input,
// beside the defaults a Kata document lists.
const benchPolicy = `package agent_policy

default StatsContainerRequest := false
default ExecProcessRequest := false
default CreateContainerRequest := true
default StartContainerRequest := true
default RemoveContainerRequest := true
default WaitProcessRequest := true
default SetPolicyRequest := true

StatsContainerRequest if {
	startswith(input.container_id, "bench-")
}

ExecProcessRequest if {
	input.process.Args[0] in ["/bin/true", "true"]
	not "CAP_SYS_ADMIN" in input.process.Capabilities.Bounding
}
`

// agentPolicy times StatsContainer on vc-agent-policy (on the host, as
// agent-rtt does) without a policy and with one whose rule reads the
// request: the difference is the policy's evaluation (Rego, OPA) per RPC.
func agentPolicy() ([]row, error) {
	bin, err := agentBinary()
	if err != nil {
		return nil, err
	}
	bin = filepath.Join(filepath.Dir(bin), "vc-agent-policy")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no vc-agent-policy beside vc-agent (make build): %w", err)
	}
	a, dir, stop, err := launchAgent(bin)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx := context.Background()
	id, remove, err := sleepingContainer(ctx, a, dir)
	if err != nil {
		return nil, err
	}
	defer remove()
	stats := func() error {
		_, err := a.Svc.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: id})
		return err
	}
	bare, err := serialN(policyCalls, stats)
	if err != nil {
		return nil, err
	}
	if _, err := a.Svc.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: benchPolicy}); err != nil {
		return nil, fmt.Errorf("SetPolicy: %w", err)
	}
	checked, err := serialN(policyCalls, stats)
	if err != nil {
		return nil, err
	}
	b50 := us(pct(bare, 50))
	return []row{
		{figure: "agent RPC StatsContainer p50 under a policy (unix)", unit: "µs", value: us(pct(checked, 50)), floor: b50, floorName: "the same without a policy",
			note: fmt.Sprintf("vc-agent-policy; the rule reads the request (Rego, OPA): %.0f µs a call", us(pct(checked, 50))-b50)},
		{figure: "agent RPC StatsContainer p99 under a policy (unix)", unit: "µs", value: us(pct(checked, 99)), floor: us(pct(bare, 99)), floorName: "the same without a policy"},
	}, nil
}
