package e2e

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// TestDialPort: Sandbox.DialPort reaches a server that listens only on
// the guest's 127.0.0.1 (an HTTP page), carries a half close (an echo
// server answers once it reads EOF), refuses a closed port as
// unavailable and port 0 as invalid, ends a blocked read on Close, and
// refuses a stopped sandbox.
func TestDialPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newSandbox(ctx, t, "e2e-dialport", "")
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	const body = "hello-from-the-guest-loopback"
	spec := oci.DefaultSpec([]string{"sh", "-c",
		"mkdir -p /dev/shm/www && echo " + body + " > /dev/shm/www/index.html && " +
			"httpd -p 127.0.0.1:8080 -h /dev/shm/www && exec nc -ll -p 8081 -e cat"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "srv", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	s.Container("srv").IOStream(ctx, "srv", vc.IO{Stdout: &out, Stderr: &out})
	if err := s.Container("srv").Start(ctx); err != nil {
		t.Fatal(err)
	}

	var c *vc.PortConn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if c, err = s.DialPort(ctx, 8080, false); err == nil || !errdefs.IsUnavailable(err) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("dial 8080: %v (container output: %s)", err, out.String())
	}
	if c.Address != "127.0.0.1:8080" {
		t.Errorf("connected to %s, want 127.0.0.1:8080", c.Address)
	}
	if _, err := io.WriteString(c, "GET /index.html HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(c)
	c.Close()
	if err != nil || !strings.Contains(string(page), "200 OK") || !strings.HasSuffix(strings.TrimSpace(string(page)), body) {
		t.Errorf("GET through DialPort: %q, %v; want a 200 with %q", page, err, body)
	}

	// Echo: the server (cat) ends its answer when it reads EOF.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if c, err = s.DialPort(ctx, 8081, false); err == nil || !errdefs.IsUnavailable(err) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("dial 8081: %v", err)
	}
	msg := strings.Repeat("ping ", 30000) // 150 KB: more than one agent call
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	echo, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(echo) != msg {
		t.Errorf("echo through DialPort: %d bytes, %v; want the %d sent back", len(echo), err, len(msg))
	}

	if _, err := s.DialPort(ctx, 8082, false); !errdefs.IsUnavailable(err) {
		t.Errorf("closed port 8082: %v, want unavailable", err)
	}
	if _, err := s.DialPort(ctx, 0, false); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "port") {
		t.Errorf("port 0: %v, want invalid argument naming port", err)
	}

	// A read blocked on a quiet connection ends with Close.
	if c, err = s.DialPort(ctx, 8081, true); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		readErr <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("a read of a closed connection returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a blocked read")
	}

	if err := s.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DialPort(ctx, 8080, false); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("dial in a stopped sandbox: %v, want failed precondition", err)
	}
}
