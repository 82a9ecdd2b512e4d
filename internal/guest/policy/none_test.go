//go:build !policy

package policy

import (
	"context"
	"errors"
	"testing"
)

// The default agent has no engine: a policy is refused, saying where the
// engine is, never accepted and ignored.
func TestCompileWithoutEngine(t *testing.T) {
	if _, err := Compile(context.Background(), "package agent_policy\n"); !errors.Is(err, ErrNoEngine) {
		t.Fatalf("Compile: %v, want ErrNoEngine", err)
	}
}
