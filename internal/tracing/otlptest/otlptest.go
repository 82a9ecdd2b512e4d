// Package otlptest is an OTLP trace receiver for tests: a gRPC server
// implementing the collector's TraceService (Start), or an HTTP server
// taking OTLP/HTTP's binary protobuf at /v1/traces (StartHTTP), that
// keeps what it receives.
package otlptest

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Span is a received span with its resource's service.name.
type Span struct {
	Service  string
	TraceID  string
	SpanID   string
	ParentID string
	Name     string
	Kind     tracepb.Span_SpanKind
	Start    uint64
	End      uint64
	Attrs    map[string]string
	Resource map[string]string
	Failed   bool
}

// Receiver receives traces on Addr.
type Receiver struct {
	collectorpb.UnimplementedTraceServiceServer
	Addr string

	srv  *grpc.Server
	hsrv *http.Server

	mu       sync.Mutex
	spans    []Span
	requests int
}

// Start serves on 127.0.0.1 at a free port.
func Start() (*Receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{Addr: l.Addr().String(), srv: grpc.NewServer()}
	collectorpb.RegisterTraceServiceServer(r.srv, r)
	go r.srv.Serve(l)
	return r, nil
}

// StartHTTP serves OTLP/HTTP (binary protobuf, POST /v1/traces) on
// 127.0.0.1 at a free port.
func StartHTTP() (*Receiver, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{Addr: l.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, hr *http.Request) {
		var body io.Reader = hr.Body
		if hr.Header.Get("Content-Encoding") == "gzip" {
			z, err := gzip.NewReader(hr.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = z
		}
		b, err := io.ReadAll(body)
		var req collectorpb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil || hr.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, fmt.Sprintf("want binary OTLP (application/x-protobuf, got %q): %v", hr.Header.Get("Content-Type"), err), http.StatusBadRequest)
			return
		}
		resp, _ := r.Export(hr.Context(), &req)
		out, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})
	r.hsrv = &http.Server{Handler: mux}
	go r.hsrv.Serve(l)
	return r, nil
}

// Stop stops the server.
func (r *Receiver) Stop() {
	if r.hsrv != nil {
		r.hsrv.Close()
		return
	}
	r.srv.Stop()
}

// Export implements the TraceService.
func (r *Receiver) Export(ctx context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		svc := res["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					Service: svc, TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					ParentID: hex.EncodeToString(s.GetParentSpanId()), Name: s.GetName(), Kind: s.GetKind(),
					Start: s.GetStartTimeUnixNano(), End: s.GetEndTimeUnixNano(), Attrs: map[string]string{}, Resource: res,
					Failed: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR,
				}
				for _, kv := range s.GetAttributes() {
					sp.Attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
				}
				r.spans = append(r.spans, sp)
			}
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

// Spans returns what was received so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Requests counts the export requests received.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}
