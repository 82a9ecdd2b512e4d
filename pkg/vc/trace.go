package vc

import (
	"context"

	"go.opentelemetry.io/otel/attribute"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/tracing"
)

// Trace spans of the lifecycle (internal/tracing; off unless the process
// turned tracing on): sandbox.create with vm.start and agent.connect in
// it, sandbox.stop, sandbox.delete, container.create, container.start,
// container.stop, container.delete; the agent calls inside are spans of
// their own (pkg/agent's client), and the agent's spans are collected
// after each operation and before the VM goes.

// Span attributes.
const (
	attrSandbox   = "vc.sandbox.id"
	attrContainer = "vc.container.id"
)

// traceOp starts the span of operation name on sandbox id (and container
// cid, if set); end ends it with the operation's error. Off, it does
// nothing.
func traceOp(ctx context.Context, name, id, cid string) (context.Context, func(error)) {
	if !tracing.Enabled() {
		return ctx, func(error) {}
	}
	attrs := []attribute.KeyValue{attribute.String(attrSandbox, id)}
	if cid != "" {
		attrs = append(attrs, attribute.String(attrContainer, cid))
	}
	ctx, span := tracing.Start(ctx, name, attrs...)
	return ctx, func(err error) { tracing.End(span, err) }
}

// traceOpCollect is traceOp whose end then collects the agent's spans.
func (s *Sandbox) traceOpCollect(ctx context.Context, name, cid string) (context.Context, func(error)) {
	if !tracing.Enabled() {
		return ctx, func(error) {}
	}
	ctx, end := traceOp(ctx, name, s.id, cid)
	return ctx, func(err error) {
		end(err)
		s.collectSpans(ctx)
	}
}

// collectSpans has the agent's recorded spans exported with the host's.
func (s *Sandbox) collectSpans(ctx context.Context) {
	if !tracing.Enabled() || s.client == nil {
		return
	}
	tracing.CollectGuest(ctx, pb.NewTracingClient(s.client), attribute.String(attrSandbox, s.id))
}
