// Package guest is the inside of vc-agent: the AgentService and Health
// services that the host runtime calls over ttRPC.
//
// Handlers return errors wrapped around errdefs sentinels
// (errdefs.ErrNotFound, ErrInvalidArgument, ...); they are turned into
// ttRPC status codes only at the edge, by the interceptor in this file.
package guest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/reaper"
	"github.com/virtcontainers/vc/internal/guest/spans"
)

// Version is the agent's version, reported by Health.Version and
// GetGuestDetails.
var Version = "0.1.0"

// Config is what the agent is started with.
type Config struct {
	// InitDaemon is true when the agent is PID 1 of the guest: it then
	// owns the machine and powers it off on DestroySandbox.
	InitDaemon bool
	// ContainerRoot is where per-container state (libcontainer's) lives.
	ContainerRoot string
	// SandboxRoot is where sandbox storages are mounted.
	SandboxRoot string
	// CopyFileRoot is the directory CopyFile may write below (default /run).
	CopyFileRoot string
	// Shutdown, when set, is called after DestroySandbox has answered.
	Shutdown func()
}

// Agent implements pb.AgentServiceService, pb.HealthService and
// pb.PortForwardService.
type Agent struct {
	cfg    Config
	reaper *reaper.Reaper
	log    *slog.Logger
	spans  *spans.Recorder // trace.go

	ctr   containerState // rpc_container.go
	misc  miscState      // rpc_misc.go
	fwd   forwardState   // rpc_portforward.go
	loop  loopbackState  // loopback.go
	sockp sockProxyState // sockproxy.go
	watch watchedState   // watched.go
}

var (
	_ pb.AgentServiceService = (*Agent)(nil)
	_ pb.HealthService       = (*Agent)(nil)
)

// New returns an agent. r must be started.
func New(cfg Config, r *reaper.Reaper) *Agent {
	if cfg.ContainerRoot == "" {
		cfg.ContainerRoot = "/run/vc-agent/containers"
	}
	if cfg.SandboxRoot == "" {
		cfg.SandboxRoot = "/run/vc-agent/sandbox"
	}
	a := &Agent{cfg: cfg, reaper: r, log: slog.Default(), spans: spans.NewRecorder(spans.DefaultMax, "vc-agent", Version)}
	a.ctr.init(a)
	a.misc.init(a)
	return a
}

// NewServer returns a ttRPC server carrying the agent's services.
func (a *Agent) NewServer() (*ttrpc.Server, error) {
	s, err := ttrpc.NewServer(
		ttrpc.WithChainUnaryServerInterceptor(a.intercept, a.traceIntercept),
		ttrpc.WithInlineUnary(inlineHandoff, inlineMethod),
	)
	if err != nil {
		return nil, err
	}
	pb.RegisterAgentServiceService(s, a)
	pb.RegisterHealthService(s, a)
	pb.RegisterPortForwardService(s, a)
	pb.RegisterTracingService(s, a)
	return s, nil
}

// inlineMethods are the calls that answer at once, without waiting on a
// process, a stream or the network: the server (the ttRPC fork in
// third_party/ttrpc) runs them on the goroutine that read the request
// and writes the response from there, saving the goroutine handoffs of a
// goroutine per request. Everything else, the long polls first
// (WaitProcess, ReadStdout, ReadStderr, SocketProxyAccept, GetOOMEvent,
// ForwardRead), starts on a goroutine of its own as before.
var inlineMethods = map[string]map[string]bool{
	"grpc.Health": {"Check": true, "Version": true},
	"grpc.AgentService": {
		"StatsContainer": true, "SignalProcess": true, "TtyWinResize": true,
		"CloseStdin": true, "ListInterfaces": true, "ListRoutes": true,
		"GetGuestDetails": true, "GetVolumeStats": true,
	},
	"grpc.Tracing": {"GetTraceSpans": true},
}

// inlineHandoff bounds how long an inline call holds up the requests
// behind it on its connection: past it, another goroutine reads them.
const inlineHandoff = 250 * time.Microsecond

func inlineMethod(service, method string) bool { return inlineMethods[service][method] }

// intercept logs each call and converts errors to ttRPC statuses
// (pb.ToGRPC: a command that could not run keeps its type).
func (a *Agent) intercept(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (resp interface{}, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("handler panicked", "method", info.FullMethod, "panic", p)
			err = status.Errorf(codes.Internal, "%s: internal error: %v", info.FullMethod, p)
		}
	}()
	resp, err = m(ctx, a.policyUnmarshaler(ctx, u, info))
	if err != nil {
		err = pb.ToGRPC(err)
		a.log.Debug("rpc failed", "method", info.FullMethod, "err", err, "took", time.Since(start))
		return nil, err
	}
	// Checked first: the arguments would be boxed on every call even
	// with debug off.
	if a.log.Enabled(ctx, slog.LevelDebug) {
		a.log.Debug("rpc", "method", info.FullMethod, "took", time.Since(start))
	}
	return resp, nil
}

// unimplemented is what an RPC returns until it is built.
func unimplemented(method string) error {
	return status.Errorf(codes.Unimplemented, "%s is not implemented by vc-agent yet", method)
}

// invalid returns an InvalidArgument error naming the field.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// Check implements Health.Check.
func (a *Agent) Check(ctx context.Context, req *pb.CheckRequest) (*pb.HealthCheckResponse, error) {
	return &pb.HealthCheckResponse{Status: pb.HealthCheckResponse_SERVING}, nil
}

// Version implements Health.Version.
func (a *Agent) Version(ctx context.Context, req *pb.CheckRequest) (*pb.VersionCheckResponse, error) {
	return &pb.VersionCheckResponse{GrpcVersion: "ttrpc", AgentVersion: Version}, nil
}

// Close stops every container, as on shutdown.
func (a *Agent) Close() {
	a.ctr.close()
	a.fwd.closeAll()
	a.loop.closeMirrors()
	a.closeSockProxies("")
}
