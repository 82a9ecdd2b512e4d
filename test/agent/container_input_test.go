package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestTerminationLog reads containers' termination messages, and checks
// that the path cannot lead out of the container.
func TestTerminationLog(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("TOPSECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Symlinks in the rootfs pointing out of it, absolute and relative.
	if err := os.Symlink(secret, filepath.Join(rootfs, "tmp", "abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("../", 20)+strings.TrimPrefix(secret, "/"), filepath.Join(rootfs, "tmp", "rel-link")); err != nil {
		t.Fatal(err)
	}
	bound := filepath.Join(outside, "bound-log")
	if err := os.WriteFile(bound, nil, 0o666); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		path   string // annotation; "" for the default
		bind   bool   // bind-mount a host file on the default path
		script string
		want   string // "" means an error with code
		code   codes.Code
	}{
		{"default-path-bind-mounted", "", true, "echo bye-bind > /dev/termination-log", "bye-bind\n", 0},
		{"annotation-in-rootfs", "/tmp/term-a.log", false, "echo bye-rootfs > /tmp/term-a.log", "bye-rootfs\n", 0},
		{"missing", "/tmp/never-written", false, "true", "", codes.NotFound},
		{"dot-dot", "/../../../../../../.." + secret, false, "true", "", codes.NotFound},
		{"absolute-symlink", "/tmp/abs-link", false, "true", "", codes.NotFound},
		{"relative-symlink", "/tmp/rel-link", false, "true", "", codes.NotFound},
		{"not-a-file", "/tmp", false, "true", "", codes.InvalidArgument},
		{"relative-path", "tmp/x", false, "true", "", codes.InvalidArgument},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := newID("term")
			s := spec(rootfs, "sh", "-c", c.script)
			if c.path != "" {
				s.Annotations = map[string]string{"io.kubernetes.container.terminationMessagePath": c.path}
			}
			if c.bind {
				s.Mounts = append(s.Mounts, &pb.Mount{Destination: "/dev/termination-log", Type: "bind", Source: bound, Options: []string{"rbind", "rw"}})
			}
			e.run(id, s)
			if st := e.wait(id, ""); st != 0 {
				t.Fatalf("status %d", st)
			}
			r, err := e.a.Svc.GetDiagnosticData(e.ctx(10*time.Second), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: id})
			if c.want != "" {
				if err != nil {
					t.Fatal(err)
				}
				if string(r.Data) != c.want {
					t.Errorf("termination log %q, want %q", r.Data, c.want)
				}
				return
			}
			if r != nil && strings.Contains(string(r.Data), "TOPSECRET") {
				t.Fatalf("read a file outside the container: %q", r.Data)
			}
			wantCode(t, "GetDiagnosticData", err, c.code, "")
		})
	}
	_, err := e.a.Svc.GetDiagnosticData(e.ctx(10*time.Second), &pb.GetDiagnosticDataRequest{LogType: "kernel_log", ContainerId: "x"})
	wantCode(t, "unknown log type", err, codes.InvalidArgument, "log_type")
	_, err = e.a.Svc.GetDiagnosticData(e.ctx(10*time.Second), &pb.GetDiagnosticDataRequest{LogType: "termination_log", ContainerId: "nope"})
	wantCode(t, "unknown container", err, codes.NotFound, "container_id")
}

// TestBadInput: wrong requests get the right codes, naming the field.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	id := newID("bad")
	e.run(id, spec(rootfs, "sleep", "1000"))
	e.exec(id, "busy", false, "sleep", "1000")
	ctx := e.ctx(time.Minute)
	svc := e.a.Svc

	withSpec := func(f func(s *pb.Spec)) *pb.Spec {
		s := spec(rootfs, "true")
		f(s)
		return s
	}
	exec := func(cid, execID string, p *pb.Process) error {
		_, err := svc.ExecProcess(ctx, &pb.ExecProcessRequest{ContainerId: cid, ExecId: execID, Process: p})
		return err
	}
	sh := &pb.Process{Args: []string{"true"}, Cwd: "/"}
	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string
	}{
		{"create/no-id", func() error { return e.tryCreate(&pb.CreateContainerRequest{OCI: spec(rootfs, "true")}) }, codes.InvalidArgument, "container_id"},
		{"create/bad-id", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: "../x", OCI: spec(rootfs, "true")})
		}, codes.InvalidArgument, "container_id"},
		{"create/no-spec", func() error { return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x")}) }, codes.InvalidArgument, "OCI"},
		{"create/empty-args", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x"), OCI: withSpec(func(s *pb.Spec) { s.Process.Args = nil })})
		}, codes.InvalidArgument, "Args"},
		{"create/no-process", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x"), OCI: withSpec(func(s *pb.Spec) { s.Process = nil })})
		}, codes.InvalidArgument, "OCI.Process"},
		{"create/relative-root", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x"), OCI: withSpec(func(s *pb.Spec) { s.Root.Path = "rootfs" })})
		}, codes.InvalidArgument, "Root"},
		{"create/bad-rlimit", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x"), OCI: withSpec(func(s *pb.Spec) { s.Process.Rlimits = []*pb.POSIXRlimit{{Type: "RLIMIT_BOGUS"}} })})
		}, codes.InvalidArgument, "Rlimits"},
		{"create/bad-namespace", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x"), OCI: withSpec(func(s *pb.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, &pb.LinuxNamespace{Type: "bogus"})
			})})
		}, codes.InvalidArgument, "OCI"},
		{"create/exists", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: id, OCI: spec(rootfs, "true")})
		}, codes.AlreadyExists, "container_id"},
		{"create/no-sandbox-pidns", func() error {
			return e.tryCreate(&pb.CreateContainerRequest{ContainerId: newID("x"), OCI: spec(rootfs, "true"), SandboxPidns: true})
		}, codes.FailedPrecondition, "sandbox_pidns"},
		{"start/unknown", func() error {
			_, err := svc.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound, "container_id"},
		{"start/twice", func() error {
			_, err := svc.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id})
			return err
		}, codes.FailedPrecondition, "container_id"},
		{"exec/unknown-container", func() error { return exec("nope", "e", sh) }, codes.NotFound, "container_id"},
		{"exec/no-container-id", func() error { return exec("", "e", sh) }, codes.InvalidArgument, "container_id"},
		{"exec/no-exec-id", func() error { return exec(id, "", sh) }, codes.InvalidArgument, "exec_id"},
		{"exec/reused-exec-id", func() error { return exec(id, "busy", sh) }, codes.AlreadyExists, "exec_id"},
		{"exec/init-exec-id", func() error { return exec(id, id, sh) }, codes.AlreadyExists, "exec_id"},
		{"exec/empty-args", func() error { return exec(id, "e", &pb.Process{Cwd: "/"}) }, codes.InvalidArgument, "Args"},
		{"exec/no-process", func() error { return exec(id, "e", nil) }, codes.InvalidArgument, "process"},
		// Typed for the host (pb.ToNative: pb.ErrCommandNotFound), of
		// class NotFound for a client that does not know the reason.
		{"exec/missing-binary", func() error {
			err := exec(id, "e2", &pb.Process{Args: []string{"/no/such"}, Cwd: "/"})
			if err != nil && !errors.Is(pb.ToNative(err), pb.ErrCommandNotFound) {
				return fmt.Errorf("not typed ErrCommandNotFound: %v", err)
			}
			return err
		}, codes.NotFound, "exec_id"},
		{"exec/not-runnable", func() error {
			err := exec(id, "e3", &pb.Process{Args: []string{"/etc"}, Cwd: "/"})
			if err != nil && !errors.Is(pb.ToNative(err), pb.ErrCommandNotRunnable) {
				return fmt.Errorf("not typed ErrCommandNotRunnable: %v", err)
			}
			return err
		}, codes.PermissionDenied, "exec_id"},
		{"wait/unknown-exec", func() error {
			_, err := svc.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: id, ExecId: "nope"})
			return err
		}, codes.NotFound, "exec_id"},
		{"signal/bad-signal", func() error {
			_, err := svc.SignalProcess(ctx, &pb.SignalProcessRequest{ContainerId: id, Signal: 1000})
			return err
		}, codes.InvalidArgument, "signal"},
		{"read/unknown-container", func() error {
			_, err := svc.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "nope", Len: 10})
			return err
		}, codes.NotFound, "container_id"},
		{"write/unknown-exec", func() error {
			_, err := svc.WriteStdin(ctx, &pb.WriteStreamRequest{ContainerId: id, ExecId: "nope", Data: []byte("x")})
			return err
		}, codes.NotFound, "exec_id"},
		{"resize/no-terminal", func() error {
			_, err := svc.TtyWinResize(ctx, &pb.TtyWinResizeRequest{ContainerId: id, ExecId: "busy", Row: 10, Column: 10})
			return err
		}, codes.FailedPrecondition, "exec_id"},
		{"update/no-resources", func() error {
			_, err := svc.UpdateContainer(ctx, &pb.UpdateContainerRequest{ContainerId: id})
			return err
		}, codes.InvalidArgument, "resources"},
		{"remove/unknown", func() error {
			_, err := svc.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound, "container_id"},
		{"pause/unknown", func() error {
			_, err := svc.PauseContainer(ctx, &pb.PauseContainerRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound, "container_id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantCode(t, c.name, c.call(), c.code, c.field)
		})
	}
	// The failed exec's id is free again.
	e.exec(id, "e2", false, "true")
	if st := e.wait(id, "e2"); st != 0 {
		t.Errorf("status %d", st)
	}
}

// TestZeroRequests sends every container RPC an empty request: each
// answers (with an error or not) and the agent survives.
func TestZeroRequests(t *testing.T) {
	e := newEnv(t)
	skip := map[string]bool{"DestroySandbox": true, "GetOOMEvent": true}
	svc := pb.File_agent_proto.Services().ByName("AgentService")
	methods := svc.Methods()
	n := 0
	for i := 0; i < methods.Len(); i++ {
		md := methods.Get(i)
		name := string(md.Name())
		if skip[name] || !isContainerRPC(name) {
			continue
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			t.Fatal(err)
		}
		req := mt.New().Interface()
		out := dynamicOutput(t, md)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = e.a.Client.Call(ctx, "grpc.AgentService", name, req, out)
		cancel()
		t.Logf("%s({}): %v", name, err)
		n++
	}
	if n < 15 {
		t.Fatalf("only %d container RPCs called", n)
	}
	if _, err := e.a.Health.Check(e.ctx(5*time.Second), &pb.CheckRequest{}); err != nil {
		t.Fatalf("agent unhealthy after empty requests: %v", err)
	}
}

func isContainerRPC(name string) bool {
	switch name {
	case "CreateSandbox", "CreateContainer", "StartContainer", "RemoveContainer", "ExecProcess",
		"SignalProcess", "WaitProcess", "UpdateContainer", "StatsContainer", "PauseContainer",
		"ResumeContainer", "WriteStdin", "ReadStdout", "ReadStderr", "CloseStdin", "TtyWinResize",
		"GetDiagnosticData":
		return true
	}
	return false
}

func dynamicOutput(t *testing.T, md protoreflect.MethodDescriptor) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}
