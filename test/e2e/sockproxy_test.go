package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// waitConns waits until counts says wantAccepted and wantOpen.
func waitConns(t *testing.T, counts func() (int, int), what string, wantAccepted, wantOpen int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, o := counts()
		if a == wantAccepted && o == wantOpen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host server %s: %d connections accepted (want %d), %d open (want %d)", what, a, wantAccepted, o, wantOpen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sockClientDir builds the socket client (test/e2e/sockclient) into a
// directory of its own, for a container to bind.
func sockClientDir(t *testing.T) string {
	t.Helper()
	client, err := testutil.Build("sockclient", "./test/e2e/sockclient", []string{"CGO_ENABLED=0"})
	if err != nil {
		t.Fatal(err)
	}
	tools := t.TempDir()
	b, err := os.ReadFile(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tools, "sockclient"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return tools
}

// Through the library, in a sandbox that outlives its containers: a
// container's delete closes the connections its processes held (the VM
// still runs), and a later container of the same sandbox gets a proxy of
// its own at the same destination.
func TestSocketProxyContainerDelete(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tools := sockClientDir(t)
	sock := filepath.Join(t.TempDir(), "echo.sock")
	counts := testenv.UnixEchoServer(t, sock)

	s := newSandbox(ctx, t, "e2e-sockproxy", "")
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	run := func(id string, args ...string) *bytes.Buffer {
		t.Helper()
		spec := oci.DefaultSpec(args, nil, "/", false)
		spec.Mounts = append(spec.Mounts,
			specs.Mount{Destination: "/run/echo.sock", Type: "bind", Source: sock, Options: []string{"rbind"}},
			specs.Mount{Destination: "/tools", Type: "bind", Source: tools, Options: []string{"rbind", "ro"}})
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: id, Rootfs: root, Spec: spec}); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		s.Container(id).IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
		if err := s.Container(id).Start(ctx); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	holderOut := run("holder", "/tools/sockclient", "-hold", "/run/echo.sock")
	waitConns(t, counts, "with a connection held in the container", 1, 1)
	c := s.Container("holder")
	if err := c.Kill(ctx, uint32(syscall.SIGKILL), true); err != nil {
		code, werr := c.Wait(ctx)
		t.Fatalf("kill the holder: %v (it exited by itself? wait: %d, %v; its output %q)", err, code, werr, holderOut.String())
	}
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	waitConns(t, counts, "after the holder's delete", 1, 0)

	out := run("client", "/tools/sockclient", "/run/echo.sock")
	if code, err := s.Container("client").Wait(ctx); err != nil || code != 0 {
		t.Fatalf("client: exit %d, %v; output %q", code, err, out)
	}
	time.Sleep(200 * time.Millisecond) // the output's last bytes
	if got := strings.TrimSpace(out.String()); got != "ok 1048726" {
		t.Errorf("client in a second container: %q, want ok 1048726", got)
	}
	if err := s.Container("client").Delete(ctx); err != nil {
		t.Fatal(err)
	}
	waitConns(t, counts, "after the client's delete", 3, 0)
}
