// Package tracing is the host's OpenTelemetry tracing: off by default,
// turned on by the standard OTEL_* environment variables or a front end's
// configuration, exported over OTLP/gRPC. Its spans cover the sandbox's
// and containers' lifecycle and each agent call (ClientInterceptor); the
// trace context travels to the agent in ttRPC metadata, and the agent's
// own spans, which the guest cannot send anywhere, come back through the
// host (CollectGuest) and leave with the host's.
//
// Off, the global tracer provider is OpenTelemetry's no-op one: spans
// are not recorded and an agent call carries no trace context.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	neturl "net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/ttrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config is tracing's configuration beside the OTEL_* environment, which
// wins where both say something (the shim's [tracing] section).
type Config struct {
	// Enabled turns tracing on even without OTEL_TRACES_EXPORTER.
	Enabled bool `toml:"enabled"`
	// Endpoint is the OTLP collector: host:port (TLS unless Insecure)
	// or a URL, http://host:port for plain text. The default is
	// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT's, then localhost:4317
	// (gRPC) or localhost:4318 (HTTP).
	Endpoint string `toml:"endpoint"`
	// Protocol is OTLP's transport: grpc (the default) or
	// http/protobuf; OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL wins.
	Protocol string `toml:"protocol"`
	// Insecure: plain text to a host:port Endpoint.
	Insecure bool `toml:"insecure"`
	// ServiceName is the resource's service.name when OTEL_SERVICE_NAME
	// does not say.
	ServiceName string `toml:"service_name"`
}

// Wanted tells whether tracing is on for c and the environment:
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off;
// OTEL_TRACES_EXPORTER=otlp, c.Enabled, or an OTLP endpoint set (in c or
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT) turn it on. Off is the default.
func (c Config) Wanted() (bool, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	e := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))
	switch e {
	case "none":
		return false, nil
	case "otlp", "":
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER %q: only otlp (or none) is supported", e)
	}
	if _, err := c.protocol(); err != nil {
		return false, err
	}
	if e == "otlp" {
		return true, nil
	}
	return c.Enabled || c.Endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
}

// protocol is the OTLP transport: the environment's, else c's, else grpc.
func (c Config) protocol() (string, error) {
	p, from := c.Protocol, "tracing protocol"
	for _, k := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if v := os.Getenv(k); v != "" {
			p, from = v, k
		}
	}
	switch p {
	case "", "grpc":
		return "grpc", nil
	case "http/protobuf":
		return p, nil
	}
	return "", fmt.Errorf("%s %q: want grpc or http/protobuf (http/json is not supported)", from, p)
}

// state is the process's tracing once Setup turned it on.
var state struct {
	on atomic.Bool

	mu     sync.Mutex
	tp     *sdktrace.TracerProvider
	client otlptrace.Client
	guest  *forwarder
}

// Enabled tells whether Setup turned tracing on in this process.
func Enabled() bool { return state.on.Load() }

// shutdownTimeout bounds the flush at exit when the caller's context has
// no deadline: a collector that does not answer delays the process's end
// by that much at most.
const shutdownTimeout = 5 * time.Second

// Setup turns tracing on when c and the environment want it (Wanted; an
// unsupported setting is logged and leaves it off):
// the global tracer provider exports to the OTLP collector (gRPC or HTTP) in
// batches and the W3C trace context is the global propagator. service
// is the default service.name. shutdown flushes what is left (guest spans
// first) and must be called before the process ends; it is a no-op when
// tracing is off.
func Setup(ctx context.Context, c Config, service string) (shutdown func(context.Context) error, err error) {
	none := func(context.Context) error { return nil }
	on, err := c.Wanted()
	if err != nil {
		// Another program's exporter setting in the environment is no
		// reason to refuse to run.
		slog.Warn("tracing stays off", "err", err)
		return none, nil
	}
	if !on {
		return none, nil
	}
	proto, _ := c.protocol() // checked by Wanted
	client := newClient(c, proto)
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return none, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	if c.ServiceName != "" {
		service = c.ServiceName
	}
	// Later detectors win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
	// over the default name.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", service)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && res == nil {
		exp.Shutdown(ctx)
		return none, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	state.mu.Lock()
	state.tp, state.client, state.guest = tp, client, newForwarder(client)
	state.mu.Unlock()
	state.on.Store(true)
	return shutdownAll, nil
}

// newClient is the OTLP client of c over proto (the OTEL_* environment
// wins over c's endpoint, and the exporters read it themselves).
func newClient(c Config, proto string) otlptrace.Client {
	fromConfig := c.Endpoint != "" && os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == ""
	url := strings.Contains(c.Endpoint, "://")
	if proto == "http/protobuf" {
		var opts []otlptracehttp.Option
		switch {
		case fromConfig && url:
			// A URL is used as it is, path included: OTLP/HTTP's
			// traces path when it has none.
			u := c.Endpoint
			if p, err := neturl.Parse(u); err == nil && (p.Path == "" || p.Path == "/") {
				p.Path = "/v1/traces"
				u = p.String()
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		case fromConfig:
			opts = append(opts, otlptracehttp.WithEndpoint(c.Endpoint))
			if c.Insecure {
				opts = append(opts, otlptracehttp.WithInsecure())
			}
		}
		return otlptracehttp.NewClient(opts...)
	}
	var opts []otlptracegrpc.Option
	switch {
	case fromConfig && url:
		opts = append(opts, otlptracegrpc.WithEndpointURL(c.Endpoint))
	case fromConfig:
		opts = append(opts, otlptracegrpc.WithEndpoint(c.Endpoint))
		if c.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
	}
	return otlptracegrpc.NewClient(opts...)
}

// shutdownAll sends the guest spans still queued, then the host's, and
// stops the exporter.
func shutdownAll(ctx context.Context) error {
	if !state.on.Swap(false) {
		return nil
	}
	state.mu.Lock()
	tp, g := state.tp, state.guest
	state.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, shutdownTimeout)
		defer cancel()
	}
	gerr := g.close(ctx)
	return errors.Join(gerr, tp.Shutdown(ctx))
}

// tracerName is the instrumentation scope of the host's spans.
const tracerName = "github.com/virtcontainers/vc"

// Start starts a span named name, child of ctx's, or else of the trace
// context of the ttRPC call ctx serves (containerd's, when it traces its
// calls to the shim). Off, it costs a call to the no-op tracer.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if Enabled() && !trace.SpanContextFromContext(ctx).IsValid() {
		if md, ok := ttrpc.GetMetadata(ctx); ok {
			ctx = propagation.TraceContext{}.Extract(ctx, mdCarrier(md))
		}
	}
	return otel.Tracer(tracerName).Start(ctx, name, trace.WithAttributes(attrs...))
}

// End ends span, failed with err when err is set.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// logOnce logs msg once per key in this process.
var logged sync.Map

func logOnce(key, msg string, args ...any) {
	if _, dup := logged.LoadOrStore(key, true); !dup {
		slog.Warn(msg, args...)
	}
}
