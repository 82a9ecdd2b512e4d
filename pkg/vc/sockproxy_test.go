package vc

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/agent"
)

// An agent without socket proxies (older than them: ttRPC answers
// Unimplemented) fails the create naming the mount and saying to update
// the agent, as FailedPrecondition (containerd retries a task Create that
// answers Unimplemented); the spec's other mounts are left alone.
func TestProxySocketsOldAgent(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(agent.StatusErrors))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	agentSock := filepath.Join(dir, "agent.sock")
	al, err := net.Listen("unix", agentSock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), al)
	conn, err := net.Dial("unix", agentSock)
	if err != nil {
		t.Fatal(err)
	}
	client := agent.NewClient(conn)
	defer client.Close()
	s := &Sandbox{id: "sb", log: slog.Default(), client: client}

	spec := &specs.Spec{Mounts: []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/data", Type: "bind", Source: guestSharedDir + "/c1/mounts/1", Options: []string{"rbind"}},
		{Destination: "/run/app.sock", Type: "bind", Source: sock, Options: []string{"rbind"}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stop, err := s.proxySockets(ctx, "c1", spec)
	want := fmt.Sprintf("mounts[2].source %q (destination /run/app.sock) is a unix socket: the guest's agent has no socket proxy", sock)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "update the agent") || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("proxySockets with an old agent: %v, want %q (failed precondition)", err, want)
	}
	if stop != nil {
		t.Error("proxySockets failed but returned a stop function")
	}
	if spec.Mounts[2].Source != sock {
		t.Errorf("socket mount's source %q after a failure, want %q", spec.Mounts[2].Source, sock)
	}
	if len(s.sockp.by) != 0 {
		t.Errorf("proxies registered after a failure: %v", s.sockp.by)
	}

	// A bind mount left a host path that is not a socket is refused.
	spec.Mounts[2].Source = dir
	if _, err := s.proxySockets(ctx, "c1", spec); err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("proxySockets of a directory: %v, want invalid argument, not a unix socket", err)
	}
}
