package tracing

import (
	"context"
	"os"
	"strings"

	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// getTraceSpansMethod is the collection of the agent's spans: never
// traced, or each collection would make spans to collect.
const getTraceSpansMethod = "/grpc.Tracing/GetTraceSpans"

// The W3C trace context's keys, in ttRPC metadata as in HTTP headers.
const (
	traceparentKey = "traceparent"
	tracestateKey  = "tracestate"
)

type quietKey struct{}

// Quiet marks ctx's agent calls as not to be traced (the health checks
// that poll a booting agent: the connect span stands for them).
func Quiet(ctx context.Context) context.Context {
	if !Enabled() {
		return ctx
	}
	return context.WithValue(ctx, quietKey{}, true)
}

// ClientInterceptor is a ttRPC client interceptor making a client span of
// each agent call and sending its trace context to the agent in the
// call's metadata (traceparent, tracestate), where the agent's span of
// the call takes it as its parent. A call forwarded by a sandbox owner's
// proxy carries its caller's trace context, which becomes the parent.
// Off, it only calls invoke.
func ClientInterceptor(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if !state.on.Load() || info.FullMethod == getTraceSpansMethod || ctx.Value(quietKey{}) != nil {
		return invoke(ctx, req, resp)
	}
	parent := ctx
	if !trace.SpanContextFromContext(ctx).IsValid() {
		if md, ok := ttrpc.GetMetadata(ctx); ok {
			parent = propagation.TraceContext{}.Extract(ctx, mdCarrier(md))
		}
	}
	name := strings.TrimPrefix(info.FullMethod, "/")
	svc, method, _ := strings.Cut(name, "/")
	ctx, span := otel.Tracer(tracerName).Start(parent, name,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("rpc.system", "ttrpc"),
			attribute.String("rpc.service", svc),
			attribute.String("rpc.method", method),
		))
	setTraceContext(ctx, req)
	err := invoke(ctx, req, resp)
	End(span, err)
	return err
}

// setTraceContext replaces the trace context of req's metadata with
// ctx's.
func setTraceContext(ctx context.Context, req *ttrpc.Request) {
	md := ttrpc.MD{}
	propagation.TraceContext{}.Inject(ctx, mdCarrier(md))
	kept := req.Metadata[:0:0]
	for _, kv := range req.Metadata {
		if kv.Key != traceparentKey && kv.Key != tracestateKey {
			kept = append(kept, kv)
		}
	}
	for k, vs := range md {
		for _, v := range vs {
			kept = append(kept, &ttrpc.KeyValue{Key: k, Value: v})
		}
	}
	req.Metadata = kept
}

// mdCarrier is ttRPC metadata as a propagation carrier.
type mdCarrier ttrpc.MD

func (c mdCarrier) Get(key string) string {
	if vs, ok := ttrpc.MD(c).Get(key); ok && len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { ttrpc.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// TraceparentEnv is the environment variable a child process finds its
// parent span in (the OpenTelemetry convention for environment carriers).
const TraceparentEnv = "TRACEPARENT"

// Environ returns the TRACEPARENT (and TRACESTATE) assignments carrying
// ctx's span to a child process, nil when tracing is off.
func Environ(ctx context.Context) []string {
	if !Enabled() {
		return nil
	}
	m := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, m)
	var env []string
	for k, v := range m {
		env = append(env, strings.ToUpper(k)+"="+v)
	}
	return env
}

// FromEnv returns ctx with the remote parent span that TRACEPARENT names,
// when tracing is on and it is set.
func FromEnv(ctx context.Context) context.Context {
	tp := os.Getenv(TraceparentEnv)
	if !Enabled() || tp == "" {
		return ctx
	}
	m := propagation.MapCarrier{traceparentKey: tp}
	if ts := os.Getenv("TRACESTATE"); ts != "" {
		m[tracestateKey] = ts
	}
	return propagation.TraceContext{}.Extract(ctx, m)
}
