package agent_test

import (
	"context"
	"testing"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

func TestHealth(t *testing.T) {
	a := testutil.StartAgent(t)
	ctx := context.Background()
	v, err := a.Health.Version(ctx, &pb.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.AgentVersion == "" {
		t.Fatal("empty agent version")
	}
	_, err = a.Svc.AddSwap(ctx, &pb.AddSwapRequest{})
	if err == nil {
		t.Fatal("AddSwap stub answered without error")
	}
	t.Logf("stub says: %v", err)
}
