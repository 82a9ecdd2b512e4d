package guest

import (
	"context"
	"strings"

	"github.com/containerd/ttrpc"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/spans"
	"github.com/virtcontainers/vc/internal/guest/storage"
)

// The agent's trace spans (package spans): each call that carries a
// sampled trace context in its ttRPC metadata gets a server span, child
// of the host's client span, and the main steps inside it (mounts,
// libcontainer's create) children of that; the host collects them with
// GetTraceSpans. A call without one costs a metadata lookup.

var _ pb.TracingService = (*Agent)(nil)

// getTraceSpansMethod is not traced: collecting would make spans to
// collect.
const getTraceSpansMethod = "/grpc.Tracing/GetTraceSpans"

// traceIntercept records a server span for a call that carries a trace
// context.
func (a *Agent) traceIntercept(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (resp any, err error) {
	tp, ok := ttrpc.GetMetadataValue(ctx, spans.TraceparentKey)
	if !ok || info.FullMethod == getTraceSpansMethod {
		return m(ctx, u)
	}
	name := strings.TrimPrefix(info.FullMethod, "/")
	ctx, sp := a.spans.StartRemote(ctx, name, tp)
	if sp != nil {
		svc, method, _ := strings.Cut(name, "/")
		sp.SetAttr("rpc.system", "ttrpc")
		sp.SetAttr("rpc.service", svc)
		sp.SetAttr("rpc.method", method)
		defer func() { sp.End(err) }()
	}
	return m(ctx, u)
}

// GetTraceSpans implements Tracing.GetTraceSpans.
func (a *Agent) GetTraceSpans(ctx context.Context, req *pb.GetTraceSpansRequest) (*pb.GetTraceSpansResponse, error) {
	data, dropped, now, err := a.spans.Drain()
	if err != nil {
		return nil, err
	}
	return &pb.GetTraceSpansResponse{TracesData: data, Dropped: dropped, NowUnixNano: now.UnixNano()}, nil
}

// tracedMount is storage.Mount in a span of its own.
func tracedMount(ctx context.Context, s *pb.Storage) (string, error) {
	ctx, sp := spans.Start(ctx, "mount")
	sp.SetAttr("storage.driver", s.GetDriver())
	sp.SetAttr("storage.mount_point", s.GetMountPoint())
	mp, err := storage.Mount(ctx, s)
	sp.End(err)
	return mp, err
}
