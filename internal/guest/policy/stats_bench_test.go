//go:build policy

package policy

import (
	"context"
	"testing"

	pb "github.com/virtcontainers/vc/api/agent"
)

func BenchmarkCheckStats(b *testing.B) {
	ctx := context.Background()
	e, err := Compile(ctx, "package agent_policy\ndefault StatsContainerRequest := false\nStatsContainerRequest if {\n\tstartswith(input.container_id, \"bench-\")\n}\n")
	if err != nil {
		b.Fatal(err)
	}
	req := &pb.StatsContainerRequest{ContainerId: "bench-1"}
	for b.Loop() {
		if _, err := e.Check(ctx, "StatsContainerRequest", req); err != nil {
			b.Fatal(err)
		}
	}
}
