package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/internal/guest"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

func TestFindMethod(t *testing.T) {
	ms, err := methods()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 40 {
		t.Fatalf("only %d methods", len(ms))
	}
	for in, want := range map[string]string{
		"Check":                              "grpc.Health.Check",
		"Health.Version":                     "grpc.Health.Version",
		"grpc.Health.Check":                  "grpc.Health.Check",
		"/grpc.AgentService/ListRoutes":      "grpc.AgentService.ListRoutes",
		"AgentService.CreateContainer":       "grpc.AgentService.CreateContainer",
		"grpc.AgentService.UpdateRoutes":     "grpc.AgentService.UpdateRoutes",
		"GetDiagnosticData":                  "grpc.AgentService.GetDiagnosticData",
		"grpc.AgentService.SetGuestDateTime": "grpc.AgentService.SetGuestDateTime",
	} {
		m, err := findMethod(ms, in)
		if err != nil {
			t.Errorf("findMethod(%q): %v", in, err)
			continue
		}
		if got := m.service + "." + m.name; got != want {
			t.Errorf("findMethod(%q) = %s, want %s", in, got, want)
		}
	}
	for in, says := range map[string]string{
		"NoSuchMethod":       "unknown method",
		"check":              "did you mean Check",
		"Health.ListRoutes":  "unknown method",
		"AgentService.Check": "unknown method",
	} {
		if _, err := findMethod(ms, in); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("findMethod(%q): %v, want an error saying %q", in, err, says)
		}
	}
}

// serve runs an in-process agent on a unix socket.
func serve(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	a := guest.New(guest.Config{ContainerRoot: filepath.Join(dir, "c"), SandboxRoot: filepath.Join(dir, "s")}, reaper.New())
	srv, err := a.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

func ctl(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestRun(t *testing.T) {
	addr := serve(t)

	code, out, errs := ctl(t, "", "-addr", addr, "call", "Check")
	if code != 0 {
		t.Fatalf("call Check: exit %d: %s", code, errs)
	}
	var health struct{ Status string }
	if err := json.Unmarshal([]byte(out), &health); err != nil || health.Status != "SERVING" {
		t.Fatalf("call Check printed %q (%v)", out, err)
	}

	code, out, errs = ctl(t, `{"service": "x"}`, "-addr", addr, "-compact", "call", "Health.Version", "-")
	if code != 0 || !strings.Contains(out, `"agentVersion"`) || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("call Version from stdin, compact: exit %d, out %q, err %q", code, out, errs)
	}

	// Errors of the agent: exit 1 with the status.
	code, _, errs = ctl(t, "", "-addr", addr, "call", "UpdateInterface", `{"interface": {"hwAddr": "zz"}}`)
	if code != 1 || !strings.Contains(errs, "InvalidArgument") || !strings.Contains(errs, "interface.hwAddr") {
		t.Fatalf("bad UpdateInterface: exit %d, %q", code, errs)
	}

	// Usage errors: exit 2, saying what is wrong.
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"-addr", addr, "call", "Nope"}, `unknown method "Nope"`},
		{[]string{"-addr", addr, "call", "Check", `{"nope": 1}`}, `unknown field "nope"`},
		{[]string{"-addr", addr, "call", "Check", `{`}, "not a grpc.CheckRequest in JSON"},
		{[]string{"-addr", "tcp://x:1", "call", "Check"}, `agent address "tcp://x:1"`},
		{[]string{"call", "Check"}, "no agent address"},
		{[]string{"-addr", addr, "frob"}, `unknown command "frob"`},
		{[]string{"-addr", addr, "call"}, "usage: call METHOD"},
		{[]string{}, "usage: vc-agent-ctl"},
	} {
		t.Setenv("VC_AGENT_ADDR", "")
		code, _, errs := ctl(t, "", c.args...)
		if code != 2 || !strings.Contains(errs, c.says) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", c.args, code, errs, c.says)
		}
	}

	// Nobody at the address: exit 1 naming it.
	code, _, errs = ctl(t, "", "-addr", addr+".gone", "call", "Check")
	if code != 1 || !strings.Contains(errs, addr+".gone") {
		t.Errorf("dead address: exit %d, %q", code, errs)
	}

	code, out, _ = ctl(t, "", "list")
	if code != 0 || !strings.Contains(out, "grpc.AgentService.CreateContainer(grpc.CreateContainerRequest) returns (google.protobuf.Empty)\n") ||
		!strings.Contains(out, "grpc.Health.Check(grpc.CheckRequest) returns (grpc.HealthCheckResponse)\n") {
		t.Errorf("list: exit %d:\n%s", code, out)
	}
	ms, err := methods()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != len(ms) || n != 50 {
		t.Errorf("list printed %d lines for %d methods (agent.proto has 40, health.proto 2, portforward.proto 8)", n, len(ms))
	}
}
