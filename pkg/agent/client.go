package agent

import (
	"context"
	"net"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/tracing"
)

// NewClient returns a ttRPC client on conn whose calls fail with errdefs
// sentinels (errdefs.IsNotFound and the like) rather than ttRPC statuses:
// the agent's errors are converted once, here, at the edge, and a
// command that could not run comes back as pb.ErrCommandNotFound or
// pb.ErrCommandNotRunnable (pb.ToNative). Errors that
// are not statuses (a closed connection, a cancelled context) are left as
// they are. With tracing on (internal/tracing), each call is a client
// span whose trace context the agent receives in the call's metadata.
func NewClient(conn net.Conn) *ttrpc.Client {
	return ttrpc.NewClient(conn, ttrpc.WithChainUnaryClientInterceptor(tracing.ClientInterceptor, nativeErrors))
}

func nativeErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	err := invoke(ctx, req, resp)
	if err == nil && resp.Status != nil && codes.Code(resp.Status.Code) != codes.OK {
		// The call went through and the agent refused it.
		err = status.ErrorProto(resp.Status)
	}
	if _, ok := status.FromError(err); ok && err != nil {
		return pb.ToNative(err)
	}
	return err
}

// StatusErrors is a ttRPC server interceptor that turns errdefs sentinels
// back into statuses (pb.ToGRPC): a server that forwards calls to a NewClient client
// (the sandbox owner's agent proxy) answers as the agent itself would.
func StatusErrors(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
	resp, err := m(ctx, u)
	if err != nil {
		return nil, pb.ToGRPC(err)
	}
	return resp, nil
}
