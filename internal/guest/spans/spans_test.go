package spans

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestParseTraceparent(t *testing.T) {
	for _, c := range []struct {
		tp string
		ok bool
	}{
		{tp, true},
		{"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", true}, // a later version may add fields
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", false},      // not sampled
		{"00-00000000000000000000000000000000-b7ad6b7169203331-01", false},
		{"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", false},
		{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", false},
		{"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
		{"00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01", false},
		{"00-zzf7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false},
		{"", false},
	} {
		_, _, ok := ParseTraceparent(c.tp)
		if ok != c.ok {
			t.Errorf("ParseTraceparent(%q) ok %v, want %v", c.tp, ok, c.ok)
		}
	}
}

func TestNoContextNoSpan(t *testing.T) {
	r := NewRecorder(10, "vc-agent", "test")
	ctx, sp := Start(context.Background(), "orphan")
	if sp != nil || ctx != context.Background() {
		t.Fatal("Start without a parent made a span")
	}
	sp.SetAttr("k", "v") // a nil span does nothing
	sp.End(errors.New("x"))
	if _, sp := r.StartRemote(context.Background(), "rpc", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"); sp != nil {
		t.Fatal("an unsampled trace context made a span")
	}
	if r.Len() != 0 {
		t.Fatalf("%d spans recorded, want 0", r.Len())
	}
}

func TestRecordAndDrain(t *testing.T) {
	r := NewRecorder(10, "vc-agent", "test")
	ctx, rpc := r.StartRemote(context.Background(), "grpc.AgentService/CreateContainer", tp)
	rpc.SetAttr("rpc.system", "ttrpc")
	_, child := Start(ctx, "libcontainer.Create")
	time.Sleep(2 * time.Millisecond)
	child.End(errors.New("boom"))
	child.End(nil) // only the first End counts
	rpc.End(nil)
	data, dropped, now, err := r.Drain()
	if err != nil || dropped != 0 {
		t.Fatalf("Drain: %v, dropped %d", err, dropped)
	}
	var td tracepb.TracesData
	if err := proto.Unmarshal(data, &td); err != nil {
		t.Fatal(err)
	}
	rs := td.ResourceSpans[0]
	if got := rs.Resource.Attributes[0].Value.GetStringValue(); got != "vc-agent" {
		t.Errorf("service.name %q", got)
	}
	ss := rs.ScopeSpans[0].Spans
	if len(ss) != 2 {
		t.Fatalf("%d spans, want 2", len(ss))
	}
	c, p := ss[0], ss[1]
	if p.Kind != tracepb.Span_SPAN_KIND_SERVER || c.Kind != tracepb.Span_SPAN_KIND_INTERNAL {
		t.Errorf("kinds %v %v", p.Kind, c.Kind)
	}
	if string(p.TraceId) != string(c.TraceId) || len(p.TraceId) != 16 {
		t.Errorf("trace ids %x %x", p.TraceId, c.TraceId)
	}
	if x := "b7ad6b7169203331"; hex.EncodeToString(p.ParentSpanId) != x {
		t.Errorf("rpc span's parent %x, want %s", p.ParentSpanId, x)
	}
	if string(c.ParentSpanId) != string(p.SpanId) {
		t.Errorf("child's parent %x, want %x", c.ParentSpanId, p.SpanId)
	}
	if c.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || c.Status.GetMessage() != "boom" {
		t.Errorf("child's status %v", c.Status)
	}
	if p.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("rpc span failed: %v", p.Status)
	}
	if c.EndTimeUnixNano-c.StartTimeUnixNano < uint64(2*time.Millisecond) || c.StartTimeUnixNano < p.StartTimeUnixNano || p.EndTimeUnixNano > uint64(now.UnixNano()) {
		t.Errorf("times: child [%d, %d], rpc [%d, %d], now %d", c.StartTimeUnixNano, c.EndTimeUnixNano, p.StartTimeUnixNano, p.EndTimeUnixNano, now.UnixNano())
	}
	if r.Len() != 0 {
		t.Errorf("%d spans left after Drain", r.Len())
	}
	if data, _, _, _ := r.Drain(); data != nil {
		t.Errorf("a second Drain returned %d bytes", len(data))
	}
}

func TestBounded(t *testing.T) {
	r := NewRecorder(3, "vc-agent", "test")
	for range 5 {
		_, sp := r.StartRemote(context.Background(), "rpc", tp)
		sp.End(nil)
	}
	if r.Len() != 3 {
		t.Fatalf("%d spans kept, want 3", r.Len())
	}
	_, dropped, _, _ := r.Drain()
	if dropped != 2 {
		t.Fatalf("dropped %d, want 2", dropped)
	}
	_, sp := r.StartRemote(context.Background(), "rpc", tp)
	sp.End(nil)
	if _, dropped, _, _ := r.Drain(); dropped != 0 || r.Len() != 0 {
		t.Fatalf("after a drain: dropped %d (want 0), %d kept", dropped, r.Len())
	}
}
