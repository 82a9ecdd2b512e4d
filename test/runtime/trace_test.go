package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/virtcontainers/vc/internal/tracing/otlptest"
)

// TestTrace: vc-runtime with the OTEL_* variables sends the trace of a
// `run`: its span, the owner's, the lifecycle's and the agent's, each
// agent RPC span a child of the host's client span of the call.
func TestTrace(t *testing.T) {
	recv, err := otlptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Stop()
	const id = "traced"
	b := bundle(t, []string{"echo", "traced"}, func(s *specs.Spec) { s.Root.Path = "rootfs" })
	if err := os.Symlink(busybox, filepath.Join(b, "rootfs")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "run", "--bundle", b, id)
	cmd.Env = append(cmd.Env, "OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+recv.Addr)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 0 || strings.TrimSpace(out.String()) != "traced" {
		t.Fatalf("run: exit %d; stdout %q, stderr %q", code, out.String(), errb.String())
	}
	find := func(spans []otlptest.Span, name string, kind tracepb.Span_SpanKind) (otlptest.Span, bool) {
		for _, s := range spans {
			if s.Name == name && (kind == 0 || s.Kind == kind) {
				return s, true
			}
		}
		return otlptest.Span{}, false
	}
	var spans []otlptest.Span
	deadline := time.Now().Add(60 * time.Second)
	for {
		spans = recv.Spans()
		_, a := find(spans, "vc-runtime run", 0)
		_, b := find(spans, "sandbox.stop", 0)
		if a && b {
			break
		}
		if time.Now().After(deadline) {
			for _, s := range spans {
				t.Logf("%s %s <- %s %s", s.Service, s.SpanID, s.ParentID, s.Name)
			}
			t.Fatal("no vc-runtime run and sandbox.stop spans within 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	byID := map[string]otlptest.Span{}
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	run, _ := find(spans, "vc-runtime run", 0)
	create, ok := find(spans, "sandbox.create", 0)
	// The owner runs in a process of its own: its span is between.
	if !ok || create.TraceID != run.TraceID || byID[create.ParentID].ParentID != run.SpanID {
		t.Errorf("sandbox.create %+v: want it under the owner's span under vc-runtime run %s", create, run.SpanID)
	}
	guest := 0
	for _, s := range spans {
		if s.Service != "vc-agent" || s.Kind != tracepb.Span_SPAN_KIND_SERVER {
			continue
		}
		guest++
		if p := byID[s.ParentID]; p.Service != "vc-runtime" || p.Kind != tracepb.Span_SPAN_KIND_CLIENT || p.Name != s.Name {
			t.Errorf("agent span %q: parent %+v, want vc-runtime's client span of the call", s.Name, p)
		}
	}
	if guest < 3 {
		t.Errorf("%d agent RPC spans, want at least CreateSandbox, CreateContainer, StartContainer", guest)
	}
}
