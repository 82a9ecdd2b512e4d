package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/internal/tracing/otlptest"
)

// vcEnv runs the vc CLI with env added to the environment.
func vcEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vcBin, append([]string{"--state-root", stateRoot, "--data-root", dataRoot}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("vc %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// TestTraceRun: `vc run` with the OTEL_* variables pointing at an OTLP
// receiver sends one trace with the host's spans and the agent's, the
// agent's RPC spans children of the host's client spans of the same
// calls.
// Over OTLP/gRPC and over OTLP/HTTP (OTEL_EXPORTER_OTLP_PROTOCOL).
func TestTraceRun(t *testing.T) {
	t.Run("grpc", func(t *testing.T) { traceRun(t, "grpc") })
	t.Run("http", func(t *testing.T) { traceRun(t, "http/protobuf") })
}

func traceRun(t *testing.T, protocol string) {
	start := otlptest.Start
	if protocol == "http/protobuf" {
		start = otlptest.StartHTTP
	}
	recv, err := start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	env := []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + recv.Addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_SERVICE_NAME=vc-e2e",
	}
	out, errOut, code := vcEnv(t, env, "run", "--rm", "--name", "e2e-trace", "busybox", "--", "echo", "traced")
	if code != 0 || !strings.Contains(out, "traced") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	noLeftovers(t, "e2e-trace")
	// vc flushed its spans before it exited.
	spans := recv.Spans()
	if len(spans) == 0 {
		t.Fatalf("the receiver got no span; vc's stderr:\n%s", errOut)
	}
	defer func() {
		if t.Failed() {
			for _, s := range spans {
				t.Logf("%-8s %-8s %s <- %-16s %s %.1fms %s", s.Service, strings.TrimPrefix(s.Kind.String(), "SPAN_KIND_"), s.SpanID, s.ParentID, s.Name, float64(s.End-s.Start)/1e6, s.Resource[tracing.ClockErrorAttr])
			}
		}
	}()
	byID := map[string]otlptest.Span{}
	traces := map[string]bool{}
	for _, s := range spans {
		byID[s.SpanID] = s
		traces[s.TraceID] = true
	}
	if len(traces) != 1 {
		t.Fatalf("%d traces, want 1", len(traces))
	}
	find := func(service, name string, kind tracepb.Span_SpanKind) otlptest.Span {
		t.Helper()
		for _, s := range spans {
			if s.Service == service && s.Name == name && (kind == tracepb.Span_SPAN_KIND_UNSPECIFIED || s.Kind == kind) {
				return s
			}
		}
		t.Fatalf("no %s span %q (kind %s)", service, name, kind)
		return otlptest.Span{}
	}
	parentIs := func(child, parent otlptest.Span) {
		t.Helper()
		if child.ParentID != parent.SpanID {
			t.Errorf("%s %q's parent is %s (%q), want %s %q", child.Service, child.Name, child.ParentID, byID[child.ParentID].Name, parent.Service, parent.Name)
		}
	}
	root := find("vc-e2e", "vc run", 0)
	if root.ParentID != "" {
		t.Errorf("vc run has a parent %s", root.ParentID)
	}
	create := find("vc-e2e", "sandbox.create", 0)
	parentIs(create, root)
	parentIs(find("vc-e2e", "vm.start", 0), create)
	parentIs(find("vc-e2e", "agent.connect", 0), create)
	cc := find("vc-e2e", "container.create", 0)
	cs := find("vc-e2e", "container.start", 0)
	for _, s := range []otlptest.Span{cc, cs} {
		if s.Attrs["vc.container.id"] == "" || s.Attrs["vc.sandbox.id"] == "" {
			t.Errorf("%s: attributes %v, want vc.sandbox.id and vc.container.id", s.Name, s.Attrs)
		}
	}
	hostCreate := find("vc-e2e", "grpc.AgentService/CreateContainer", tracepb.Span_SPAN_KIND_CLIENT)
	parentIs(hostCreate, cc)
	parentIs(find("vc-e2e", "grpc.AgentService/StartContainer", tracepb.Span_SPAN_KIND_CLIENT), cs)
	parentIs(find("vc-e2e", "grpc.AgentService/CreateSandbox", tracepb.Span_SPAN_KIND_CLIENT), create)

	// The guest's: each RPC span is the child of the host's client span
	// of the same call, and the steps inside are its children.
	guestCreate := find("vc-agent", "grpc.AgentService/CreateContainer", tracepb.Span_SPAN_KIND_SERVER)
	parentIs(guestCreate, hostCreate)
	parentIs(find("vc-agent", "libcontainer.Create", 0), guestCreate)
	parentIs(find("vc-agent", "libcontainer.Start", 0), guestCreate)
	guestRPCs := 0
	for _, s := range spans {
		if s.Service != "vc-agent" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		guestRPCs++
		p, ok := byID[s.ParentID]
		if !ok || p.Service != "vc-e2e" || p.Kind != tracepb.Span_SPAN_KIND_CLIENT || p.Name != s.Name {
			t.Errorf("guest span %q's parent %s is %+v, want the host's client span of the call", s.Name, s.ParentID, p)
			continue
		}
		// The guest's clock is corrected to the host's: its span lies
		// within the host's, give or take the correction's error bound.
		bound, err := time.ParseDuration(s.Resource[tracing.ClockErrorAttr])
		if err != nil {
			t.Errorf("guest span %q: resource attribute %s: %v", s.Name, tracing.ClockErrorAttr, err)
		}
		slack := uint64(bound + 20*time.Millisecond) // and the clocks' drift since
		if s.Start+slack < p.Start || s.End > p.End+slack {
			t.Errorf("guest span %q [%d, %d] is outside its host span [%d, %d] by more than the clock's error bound %s", s.Name, s.Start, s.End, p.Start, p.End, bound)
		}
	}
	if guestRPCs < 4 {
		t.Errorf("%d guest RPC spans, want at least CreateSandbox, CreateContainer, StartContainer, WaitProcess", guestRPCs)
	}
	t.Logf("%d spans (%d guest RPC spans) in trace %s", len(spans), guestRPCs, root.TraceID)
}

// TestTraceOff: with OTEL_TRACES_EXPORTER=none nothing is sent, even to a
// configured endpoint.
func TestTraceOff(t *testing.T) {
	recv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	env := []string{
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + recv.Addr,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
	}
	out, errOut, code := vcEnv(t, env, "run", "--rm", "--name", "e2e-notrace", "busybox", "--", "true")
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	noLeftovers(t, "e2e-notrace")
	if n := recv.Requests(); n != 0 {
		t.Fatalf("the receiver got %d export requests (%d spans) with tracing off", n, len(recv.Spans()))
	}
}

// TestTraceDetached: `vc run -d` hands its span to the detached owner
// (TRACEPARENT), whose spans are its children; `vc exec` beside it goes
// through the owner's agent socket with its own trace, whose agent spans
// are children of the owner's forwarding client spans, themselves
// children of vc exec's; the owner's last spans leave as it exits.
func TestTraceDetached(t *testing.T) {
	recv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	env := []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + recv.Addr,
		"OTEL_SERVICE_NAME=vc-e2e",
	}
	const id = "e2e-trace-d"
	if out, errOut, code := vcEnv(t, env, "run", "-d", "--name", id, "busybox", "--", "sleep", "300"); code != 0 {
		t.Fatalf("run -d: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	defer vcEnv(t, nil, "rm", "-f", id)
	if out, errOut, code := vcEnv(t, env, "exec", id, "echo", "hi"); code != 0 || strings.TrimSpace(out) != "hi" {
		t.Fatalf("exec: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if out, errOut, code := vcEnv(t, env, "rm", "-f", id); code != 0 {
		t.Fatalf("rm -f: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	noLeftovers(t, id)
	named := func(spans []otlptest.Span, service, name string, kind tracepb.Span_SpanKind) []otlptest.Span {
		var out []otlptest.Span
		for _, s := range spans {
			if s.Service == service && s.Name == name && (kind == 0 || s.Kind == kind) {
				out = append(out, s)
			}
		}
		return out
	}
	var spans []otlptest.Span
	waitFor(t, func() bool {
		spans = recv.Spans()
		return len(named(spans, "vc-e2e", "vc run-owner", 0)) == 1 && len(named(spans, "vc-agent", "grpc.AgentService/ExecProcess", 0)) == 1
	}, "the owner's spans and the agent's ExecProcess span")
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	run, owner := named(spans, "vc-e2e", "vc run", 0), named(spans, "vc-e2e", "vc run-owner", 0)
	if len(run) != 1 || owner[0].ParentID != run[0].SpanID {
		t.Fatalf("vc run spans %v; the owner's parent %s", run, owner[0].ParentID)
	}
	create := named(spans, "vc-e2e", "sandbox.create", 0)
	if len(create) != 1 || create[0].ParentID != owner[0].SpanID {
		t.Errorf("sandbox.create %v: want one, child of the owner's span", create)
	}
	exec := named(spans, "vc-e2e", "vc exec", 0)
	cexec := named(spans, "vc-e2e", "container.exec", 0)
	if len(exec) != 1 || len(cexec) != 1 || cexec[0].ParentID != exec[0].SpanID {
		t.Fatalf("vc exec %v, container.exec %v: want one each, the second under the first", exec, cexec)
	}
	guest := named(spans, "vc-agent", "grpc.AgentService/ExecProcess", 0)[0]
	fwd := byID[guest.ParentID] // the owner's client span, forwarding
	caller := byID[fwd.ParentID]
	if fwd.Kind != tracepb.Span_SPAN_KIND_CLIENT || caller.Kind != tracepb.Span_SPAN_KIND_CLIENT || caller.ParentID != cexec[0].SpanID || guest.TraceID != exec[0].TraceID {
		t.Errorf("the agent's ExecProcess span: parent %+v, its parent %+v; want the owner's client span under vc exec's client span under container.exec %v", fwd, caller, cexec)
	}
}
