// Package spans records the agent's trace spans without the OpenTelemetry
// SDK: the guest has no route to a collector, so the spans of the calls
// that carry a sampled W3C trace context (ttRPC metadata "traceparent")
// wait in a bounded buffer until the host collects them (Drain, the
// Tracing service's GetTraceSpans), encoded as OTLP protobuf, and exports
// them with its own spans.
//
// A call without a trace context records nothing: Start on a context
// without a span returns a nil *Span, whose methods do nothing.
package spans

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TraceparentKey is the ttRPC metadata key of the W3C trace context.
const TraceparentKey = "traceparent"

// DefaultMax is how many ended spans a recorder keeps until collected
// (a span takes about 0.5 KiB: the buffer stays near 1 MiB of the guest's
// memory when no host collects). The host collects after each operation,
// a few dozen spans at a time.
const DefaultMax = 2048

// Recorder keeps ended spans, at most max; those beyond are dropped and
// counted.
type Recorder struct {
	resource *resourcepb.Resource

	mu      sync.Mutex
	ended   []ended
	max     int
	dropped uint64
}

// ended is a span and its times, kept with their monotonic clock reading
// until Drain turns them into the wall clock (the guest's clock is set by
// the host after the first calls).
type ended struct {
	s          *tracepb.Span
	start, end time.Time
}

// NewRecorder returns a recorder keeping at most max spans, whose spans
// come from the service named service (OTLP resource service.name).
func NewRecorder(max int, service, version string) *Recorder {
	if max <= 0 {
		max = DefaultMax
	}
	return &Recorder{
		max: max,
		resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			strAttr("service.name", service),
			strAttr("service.version", version),
		}},
	}
}

// Span is a span being recorded. A nil *Span records nothing.
type Span struct {
	r     *Recorder
	s     *tracepb.Span
	start time.Time
	once  sync.Once
}

type spanKey struct{}

// ParseTraceparent reads a W3C traceparent ("00-TRACEID-SPANID-FLAGS"):
// ok only when it is well formed, its ids are not zero and it is sampled.
func ParseTraceparent(tp string) (traceID [16]byte, spanID [8]byte, ok bool) {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[0]) != 2 || parts[0] == "ff" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return traceID, spanID, false
	}
	if parts[0] == "00" && len(parts) != 4 {
		return traceID, spanID, false
	}
	var flags [1]byte
	if _, err := hex.Decode(traceID[:], []byte(parts[1])); err != nil {
		return traceID, spanID, false
	}
	if _, err := hex.Decode(spanID[:], []byte(parts[2])); err != nil {
		return traceID, spanID, false
	}
	if _, err := hex.Decode(flags[:], []byte(parts[3])); err != nil {
		return traceID, spanID, false
	}
	if traceID == ([16]byte{}) || spanID == ([8]byte{}) || flags[0]&1 == 0 {
		return traceID, spanID, false
	}
	return traceID, spanID, true
}

// StartRemote starts a server span named name whose parent is the
// caller's, traceparent; with no valid, sampled traceparent it records
// nothing and returns ctx and nil.
func (r *Recorder) StartRemote(ctx context.Context, name, traceparent string) (context.Context, *Span) {
	if r == nil {
		return ctx, nil
	}
	tid, pid, ok := ParseTraceparent(traceparent)
	if !ok {
		return ctx, nil
	}
	return r.start(ctx, name, tid[:], pid[:], tracepb.Span_SPAN_KIND_SERVER)
}

// Start starts a child of ctx's span; without one it records nothing and
// returns ctx and nil.
func Start(ctx context.Context, name string) (context.Context, *Span) {
	p, _ := ctx.Value(spanKey{}).(*Span)
	if p == nil {
		return ctx, nil
	}
	return p.r.start(ctx, name, p.s.TraceId, p.s.SpanId, tracepb.Span_SPAN_KIND_INTERNAL)
}

func (r *Recorder) start(ctx context.Context, name string, traceID, parentID []byte, kind tracepb.Span_SpanKind) (context.Context, *Span) {
	id := make([]byte, 8)
	for {
		v := rand.Uint64()
		if v != 0 {
			for i := range id {
				id[i] = byte(v >> (8 * i))
			}
			break
		}
	}
	sp := &Span{r: r, start: time.Now(), s: &tracepb.Span{
		TraceId:      traceID,
		SpanId:       id,
		ParentSpanId: parentID,
		Name:         name,
		Kind:         kind,
		Flags:        1, // sampled
	}}
	return context.WithValue(ctx, spanKey{}, sp), sp
}

// SetAttr sets a string attribute.
func (s *Span) SetAttr(key, value string) {
	if s == nil {
		return
	}
	s.s.Attributes = append(s.s.Attributes, strAttr(key, value))
}

// End ends the span, failed when err is set, and keeps it for Drain.
// Only the first End counts.
func (s *Span) End(err error) {
	if s == nil {
		return
	}
	s.once.Do(func() {
		if err != nil {
			s.s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: err.Error()}
		}
		s.r.add(ended{s: s.s, start: s.start, end: time.Now()})
	})
}

func (r *Recorder) add(e ended) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ended) >= r.max {
		r.dropped++
		return
	}
	r.ended = append(r.ended, e)
}

// Drain returns the ended spans as an encoded OTLP TracesData (nil when
// there are none), how many were dropped, and the clock their times were
// read against, and forgets them.
func (r *Recorder) Drain() (data []byte, dropped uint64, now time.Time, err error) {
	r.mu.Lock()
	es, dropped := r.ended, r.dropped
	r.ended, r.dropped = nil, 0
	r.mu.Unlock()
	now = time.Now()
	if len(es) == 0 {
		return nil, dropped, now, nil
	}
	// The times are the wall clock now less the monotonic time since:
	// right even for spans that ended before the clock was set.
	wall := func(t time.Time) uint64 { return uint64(now.UnixNano() - int64(now.Sub(t))) }
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "github.com/virtcontainers/vc/internal/guest"}}
	for _, e := range es {
		e.s.StartTimeUnixNano = wall(e.start)
		e.s.EndTimeUnixNano = wall(e.end)
		ss.Spans = append(ss.Spans, e.s)
	}
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{{Resource: r.resource, ScopeSpans: []*tracepb.ScopeSpans{ss}}}}
	data, err = proto.Marshal(td)
	return data, dropped, now, err
}

// Len is how many ended spans wait to be collected.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ended)
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}
