package tracing

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/virtcontainers/vc/api/agent"
)

// collectTimeout bounds one collection of the agent's spans.
const collectTimeout = 2 * time.Second

// CollectGuest fetches the spans the agent recorded since the last call
// and queues them for export beside the host's, with attrs added to
// their resource (the sandbox's id). Nothing happens when tracing is off.
// An agent without the Tracing service is logged once per process; any
// failure leaves the operation that collects alone.
func CollectGuest(ctx context.Context, agent pb.TracingService, attrs ...attribute.KeyValue) {
	if !Enabled() || agent == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), collectTimeout)
	defer cancel()
	t0 := time.Now()
	r, err := agent.GetTraceSpans(ctx, &pb.GetTraceSpansRequest{})
	t1 := time.Now()
	if err != nil {
		if errdefs.IsNotImplemented(err) || status.Code(err) == codes.Unimplemented {
			logOnce("unimplemented", "the agent does not hand out its trace spans (an older agent?): the trace has the host's spans only", "err", err)
		} else {
			slog.Debug("collect the agent's trace spans", "err", err)
		}
		return
	}
	if len(r.GetTracesData()) == 0 {
		return
	}
	// The guest's clock against the host's, at the middle of the call;
	// a loaded host or guest makes the call slow and the estimate poor
	// (off by up to half the round trip): the quickest of a few more
	// samples is kept (NTP's way), and its error bound recorded.
	best := clockSample{t0, t1, r.GetNowUnixNano()}
	datas := [][]byte{r.GetTracesData()}
	dropped := r.GetDropped()
	for i := 0; i < clockSamples && best.rtt() > goodRTT; i++ {
		t0 := time.Now()
		r, err := agent.GetTraceSpans(ctx, &pb.GetTraceSpansRequest{})
		t1 := time.Now()
		if err != nil {
			break
		}
		if len(r.GetTracesData()) > 0 {
			datas = append(datas, r.GetTracesData())
		}
		dropped += r.GetDropped()
		if c := (clockSample{t0, t1, r.GetNowUnixNano()}); c.rtt() < best.rtt() {
			best = c
		}
	}
	if dropped > 0 {
		slog.Warn("the agent dropped trace spans (its buffer was full)", "dropped", dropped)
	}
	var rss []*tracepb.ResourceSpans
	for _, d := range datas {
		var td tracepb.TracesData
		if err := proto.Unmarshal(d, &td); err != nil {
			slog.Warn("the agent's trace spans do not decode", "err", err)
			return
		}
		rss = append(rss, td.ResourceSpans...)
	}
	var shift int64
	if best.guest != 0 {
		shift = best.t0.Add(best.rtt()/2).UnixNano() - best.guest
	}
	attrs = append(attrs, attribute.String(ClockErrorAttr, (best.rtt()/2).String()))
	Adjust(rss, shift, attrs...)
	state.mu.Lock()
	g := state.guest
	state.mu.Unlock()
	g.send(rss)
}

// ClockErrorAttr is the guest spans' resource attribute bounding the
// error of their times' correction to the host's clock (a duration).
const ClockErrorAttr = "vc.guest.clock_error"

// clockSamples more samples at most, until one's round trip is under
// goodRTT.
const (
	clockSamples = 3
	goodRTT      = 4 * time.Millisecond
)

// clockSample is the guest's clock (guest, Unix ns) read by a call
// between t0 and t1 on the host's.
type clockSample struct {
	t0, t1 time.Time
	guest  int64
}

func (c clockSample) rtt() time.Duration { return c.t1.Sub(c.t0) }

// Adjust shifts the spans' times by shift nanoseconds and adds attrs to
// their resources.
func Adjust(rss []*tracepb.ResourceSpans, shift int64, attrs ...attribute.KeyValue) {
	for _, rs := range rss {
		if len(attrs) > 0 {
			if rs.Resource == nil {
				rs.Resource = &resourcepb.Resource{}
			}
			for _, a := range attrs {
				rs.Resource.Attributes = append(rs.Resource.Attributes, &commonpb.KeyValue{
					Key:   string(a.Key),
					Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: a.Value.Emit()}},
				})
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				s.StartTimeUnixNano = uint64(int64(s.StartTimeUnixNano) + shift)
				s.EndTimeUnixNano = uint64(int64(s.EndTimeUnixNano) + shift)
			}
		}
	}
}

// forwarder uploads the guest's spans with the exporter's client, in the
// background: a collection does not wait for the collector.
type forwarder struct {
	client otlptrace.Client
	ch     chan []*tracepb.ResourceSpans
	done   chan struct{}

	mu     sync.Mutex
	closed bool
}

// forwardQueue is how many collections wait for upload; more are dropped.
const forwardQueue = 64

func newForwarder(c otlptrace.Client) *forwarder {
	f := &forwarder{client: c, ch: make(chan []*tracepb.ResourceSpans, forwardQueue), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for rss := range f.ch {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := f.client.UploadTraces(ctx, rss); err != nil {
				logOnce("upload", "export the agent's trace spans", "err", err)
			}
			cancel()
		}
	}()
	return f
}

func (f *forwarder) send(rss []*tracepb.ResourceSpans) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	select {
	case f.ch <- rss:
	default:
		logOnce("queue", "the agent's trace spans are dropped: the collector is behind", "queued", forwardQueue)
	}
}

// close uploads what is queued, until ctx ends.
func (f *forwarder) close(ctx context.Context) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		close(f.ch)
	}
	f.mu.Unlock()
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
