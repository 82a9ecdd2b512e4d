package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// serve serves methods on a ttRPC server (with interceptor) and returns a
// NewClient client of it.
func serve(t *testing.T, interceptor ttrpc.UnaryServerInterceptor, methods map[string]ttrpc.Method) *ttrpc.Client {
	t.Helper()
	srvConn, cliConn := net.Pipe()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(interceptor))
	if err != nil {
		t.Fatal(err)
	}
	srv.Register("vc.test", methods)
	l := &oneConnListener{conn: srvConn, done: make(chan struct{})}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(cliConn)
	t.Cleanup(func() { c.Close() })
	return c
}

// The agent's report of a command that could not run reaches a NewClient
// caller typed, through the owner's agent proxy (StatusErrors) too: the
// front ends map the type to an exit code, never the message.
func TestNewClientCommandErrors(t *testing.T) {
	guestSide := func(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
		resp, err := m(ctx, u)
		return resp, pb.ToGRPC(err) // as the agent's interceptor does
	}
	var resp emptypb.Empty
	for _, typed := range []error{pb.ErrCommandNotFound, pb.ErrCommandNotRunnable} {
		agent := serve(t, guestSide, map[string]ttrpc.Method{
			"Exec": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				return nil, fmt.Errorf(`exec_id "e": start: exec: "x": reason: %w`, typed)
			},
		})
		proxy := serve(t, StatusErrors, map[string]ttrpc.Method{
			"Exec": func(ctx context.Context, unmarshal func(any) error) (any, error) {
				return nil, agent.Call(ctx, "vc.test", "Exec", &emptypb.Empty{}, &resp)
			},
		})
		for name, c := range map[string]*ttrpc.Client{"agent": agent, "proxy": proxy} {
			err := c.Call(context.Background(), "vc.test", "Exec", &emptypb.Empty{}, &resp)
			if !errors.Is(err, typed) || err.Error() != `exec_id "e": start: exec: "x": reason: `+typed.Error() {
				t.Errorf("%s: %v: want %v, said once", name, err, typed)
			}
		}
	}
	// A NotFound that is not a command's stays untyped.
	agent := serve(t, guestSide, map[string]ttrpc.Method{
		"Exec": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			return nil, fmt.Errorf("container_id %q: no such container: %w", "c", errdefs.ErrNotFound)
		},
	})
	err := agent.Call(context.Background(), "vc.test", "Exec", &emptypb.Empty{}, &resp)
	if !errdefs.IsNotFound(err) || errors.Is(err, pb.ErrCommandNotFound) {
		t.Errorf("no such container: %v", err)
	}
}
