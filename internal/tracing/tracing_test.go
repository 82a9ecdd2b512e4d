package tracing_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/otel/attribute"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/internal/tracing/otlptest"
	"github.com/virtcontainers/vc/pkg/agent"
)

func TestWanted(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		t.Setenv(k, "")
	}
	check := func(what string, c tracing.Config, want bool) {
		t.Helper()
		got, err := c.Wanted()
		if err != nil || got != want {
			t.Errorf("%s: Wanted() = %v, %v; want %v", what, got, err, want)
		}
	}
	check("nothing set", tracing.Config{}, false)
	check("config enabled", tracing.Config{Enabled: true}, true)
	check("config endpoint", tracing.Config{Endpoint: "collector:4317"}, true)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
	check("env endpoint", tracing.Config{}, true)
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	check("exporter none", tracing.Config{Enabled: true}, false)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	check("exporter otlp", tracing.Config{}, true)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	check("sdk disabled", tracing.Config{Enabled: true}, false)
	t.Setenv("OTEL_SDK_DISABLED", "")
	check("config http/protobuf", tracing.Config{Enabled: true, Protocol: "http/protobuf"}, true)
	if _, err := (tracing.Config{Enabled: true, Protocol: "udp"}).Wanted(); err == nil || !strings.Contains(err.Error(), "tracing protocol") {
		t.Errorf("protocol udp: %v, want an error naming the setting", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
	if _, err := (tracing.Config{Enabled: true, Protocol: "grpc"}).Wanted(); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
		t.Errorf("http/json: %v, want an error naming the variable", err)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	if _, err := (tracing.Config{}).Wanted(); err == nil {
		t.Error("OTEL_TRACES_EXPORTER=zipkin: no error")
	}
}

// TestSetupHTTP: with http/protobuf (the configuration's, or
// OTEL_EXPORTER_OTLP_PROTOCOL's) spans reach an OTLP/HTTP receiver, with
// their parent.
func TestSetupHTTP(t *testing.T) {
	for _, how := range []string{"config", "env"} {
		t.Run(how, func(t *testing.T) {
			for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
				t.Setenv(k, "")
			}
			recv, err := otlptest.StartHTTP()
			if err != nil {
				t.Fatal(err)
			}
			defer recv.Stop()
			c := tracing.Config{Endpoint: "http://" + recv.Addr, Protocol: "http/protobuf"}
			if how == "env" {
				c = tracing.Config{}
				t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
				t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+recv.Addr)
			}
			shutdown, err := tracing.Setup(context.Background(), c, "http-test")
			if err != nil {
				t.Fatal(err)
			}
			ctx, parent := tracing.Start(context.Background(), "parent")
			_, child := tracing.Start(ctx, "child")
			child.End()
			parent.End()
			if err := shutdown(context.Background()); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			byName := map[string]otlptest.Span{}
			for _, s := range recv.Spans() {
				byName[s.Name] = s
			}
			p, ch := byName["parent"], byName["child"]
			if p.SpanID == "" || ch.ParentID != p.SpanID || ch.TraceID != p.TraceID || p.Service != "http-test" {
				t.Fatalf("spans over OTLP/HTTP: %+v", recv.Spans())
			}
		})
	}
}

// TestPropagation runs the real agent: with tracing off an agent call
// carries no trace context and the agent records nothing; on, the host's
// client span of a call is the parent of the agent's span of it, a call
// forwarded with its caller's trace context in its metadata (an owner's
// proxy) is a child of the caller's span, and the agent's spans reach the
// collector through CollectGuest.
func TestPropagation(t *testing.T) {
	a := testutil.StartAgent(t)
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"} {
		t.Setenv(k, "")
	}
	conn, err := net.Dial("unix", a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	c := agent.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	health, tr := pb.NewHealthClient(c), pb.NewTracingClient(c)

	// Off.
	if tracing.Enabled() {
		t.Fatal("tracing on before Setup")
	}
	if _, err := health.Check(ctx, &pb.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if r, err := tr.GetTraceSpans(ctx, &pb.GetTraceSpansRequest{}); err != nil || len(r.TracesData) != 0 {
		t.Fatalf("tracing off: GetTraceSpans = %d bytes, %v; want none", len(r.GetTracesData()), err)
	}

	// On.
	recv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	shutdown, err := tracing.Setup(ctx, tracing.Config{Endpoint: "http://" + recv.Addr}, "tracing-test")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	if !tracing.Enabled() {
		t.Fatal("Setup with an endpoint left tracing off")
	}
	sctx, span := tracing.Start(ctx, "test")
	if _, err := health.Check(sctx, &pb.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := health.Check(tracing.Quiet(sctx), &pb.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	tracing.End(span, nil)
	// A forwarded call: no span in the context, the caller's in the
	// metadata.
	const callerSpan = "b7ad6b7169203331"
	md := ttrpc.MD{}
	md.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-"+callerSpan+"-01")
	if _, err := health.Version(ttrpc.WithMetadata(ctx, md), &pb.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	tracing.CollectGuest(ctx, tr, attribute.String("vc.sandbox.id", "sb1"))
	if err := shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	spans := recv.Spans()
	find := func(service, name string, kind tracepb.Span_SpanKind) otlptest.Span {
		t.Helper()
		var found []otlptest.Span
		for _, s := range spans {
			if s.Service == service && s.Name == name && s.Kind == kind {
				found = append(found, s)
			}
		}
		if len(found) != 1 {
			for _, s := range spans {
				t.Logf("%s %s %s <- %s %s", s.Service, s.Kind, s.SpanID, s.ParentID, s.Name)
			}
			t.Fatalf("%d %s %s spans %q, want 1", len(found), service, kind, name)
		}
		return found[0]
	}
	root := find("tracing-test", "test", tracepb.Span_SPAN_KIND_INTERNAL)
	hc := find("tracing-test", "grpc.Health/Check", tracepb.Span_SPAN_KIND_CLIENT) // one: the quiet call has none
	gc := find("vc-agent", "grpc.Health/Check", tracepb.Span_SPAN_KIND_SERVER)
	if hc.ParentID != root.SpanID || gc.ParentID != hc.SpanID || gc.TraceID != root.TraceID {
		t.Errorf("Check: host client span's parent %s (want %s), agent's parent %s (want %s), trace %s (want %s)", hc.ParentID, root.SpanID, gc.ParentID, hc.SpanID, gc.TraceID, root.TraceID)
	}
	if gc.Resource["vc.sandbox.id"] != "sb1" || gc.Resource[tracing.ClockErrorAttr] == "" {
		t.Errorf("agent span's resource %v: want vc.sandbox.id sb1 and %s", gc.Resource, tracing.ClockErrorAttr)
	}
	hv := find("tracing-test", "grpc.Health/Version", tracepb.Span_SPAN_KIND_CLIENT)
	gv := find("vc-agent", "grpc.Health/Version", tracepb.Span_SPAN_KIND_SERVER)
	if hv.ParentID != callerSpan || hv.TraceID != "0af7651916cd43dd8448eb211c80319c" || gv.ParentID != hv.SpanID {
		t.Errorf("forwarded Version: client span's parent %s/%s (want the caller's %s), agent's parent %s (want %s)", hv.TraceID, hv.ParentID, callerSpan, gv.ParentID, hv.SpanID)
	}
	for _, s := range spans {
		if s.Name == "grpc.Tracing/GetTraceSpans" {
			t.Errorf("the collection itself was traced (%s)", s.Service)
		}
	}
}

// BenchmarkClientInterceptor is the host's cost per agent call: off (an
// atomic load), and on (a client span, its trace context in the call's
// metadata, the batch exporter sending to a receiver).
func BenchmarkClientInterceptor(b *testing.B) {
	info := &ttrpc.UnaryClientInfo{FullMethod: "/grpc.Health/Check"}
	invoke := func(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response) error { return nil }
	run := func(b *testing.B, ctx context.Context) {
		for b.Loop() {
			req := &ttrpc.Request{Service: "grpc.Health", Method: "Check"}
			if err := tracing.ClientInterceptor(ctx, req, &ttrpc.Response{}, info, invoke); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("off", func(b *testing.B) { run(b, context.Background()) })
	recv, err := otlptest.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer recv.Stop()
	b.Setenv("OTEL_TRACES_EXPORTER", "")
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	shutdown, err := tracing.Setup(context.Background(), tracing.Config{Endpoint: "http://" + recv.Addr}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer shutdown(context.Background())
	ctx, span := tracing.Start(context.Background(), "parent")
	defer span.End()
	b.Run("on", func(b *testing.B) { run(b, ctx) })
}

type healthOnly struct{}

func (healthOnly) Check(context.Context, *pb.CheckRequest) (*pb.HealthCheckResponse, error) {
	return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
}

func (healthOnly) Version(context.Context, *pb.CheckRequest) (*pb.VersionCheckResponse, error) {
	return &pb.VersionCheckResponse{AgentVersion: "old"}, nil
}

// TestCollectOldAgent: an agent without the Tracing service (an older
// one) is logged once and the calls go on.
func TestCollectOldAgent(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	recv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	shutdown, err := tracing.Setup(context.Background(), tracing.Config{Endpoint: "http://" + recv.Addr}, "old-agent-test")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)

	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	pb.RegisterHealthService(srv, healthOnly{})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "old.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	defer srv.Close()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := agent.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		tracing.CollectGuest(ctx, pb.NewTracingClient(c))
		if _, err := pb.NewHealthClient(c).Check(ctx, &pb.CheckRequest{}); err != nil {
			t.Fatalf("a call after the collection: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "does not hand out its trace spans"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
}
