package containerd_test

import (
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/virtcontainers/vc/internal/tracing/otlptest"
)

// TestVCTrace: the shim's [tracing] section sends the spans of a `ctr
// run` to an OTLP receiver: the shim's lifecycle and agent call spans,
// and the agent's, each agent RPC span a child of the shim's client span
// of the call, in its trace.
func TestVCTrace(t *testing.T) {
	recv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	d := startVC(t, "[tracing]\nendpoint = \"http://"+recv.Addr+"\"\nservice_name = \"shim-test\"\n")
	out, stderr, code := d.ctrRun(t, "vc-trace", "echo", "traced")
	if code != 0 || strings.TrimSpace(out) != "traced" {
		t.Fatalf("ctr run: exit %d, stdout %q, stderr %s", code, out, stderr)
	}
	// The shim flushes as it exits, after ctr run --rm deleted the task.
	has := func(spans []otlptest.Span, service, name string) bool {
		for _, s := range spans {
			if s.Service == service && s.Name == name {
				return true
			}
		}
		return false
	}
	var spans []otlptest.Span
	waitFor(t, 60*time.Second, "the shim's and the agent's spans", func() bool {
		spans = recv.Spans()
		return has(spans, "shim-test", "sandbox.delete") && has(spans, "vc-agent", "grpc.AgentService/CreateContainer")
	})
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	for _, name := range []string{"sandbox.create", "vm.start", "agent.connect", "container.create", "container.start", "sandbox.stop", "sandbox.delete"} {
		if !has(spans, "shim-test", name) {
			t.Errorf("no shim span %q", name)
		}
	}
	guest := 0
	for _, s := range spans {
		if s.Service != "vc-agent" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		guest++
		p, ok := byID[s.ParentID]
		if !ok || p.Service != "shim-test" || p.Kind != tracepb.Span_SPAN_KIND_CLIENT || p.Name != s.Name || p.TraceID != s.TraceID {
			t.Errorf("agent span %q: parent %+v, want the shim's client span of the call", s.Name, p)
		}
	}
	if guest < 3 {
		t.Errorf("%d agent RPC spans, want CreateSandbox, CreateContainer, StartContainer at least", guest)
	}
	t.Logf("%d spans, %d agent RPC spans", len(spans), guest)
}
