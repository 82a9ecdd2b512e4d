package guest

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

// TestSocketProxy drives a socket proxy through the handlers: the
// listener in the agent's directory with the host socket's mode, an
// accept that times out with id 0, a connection carried as a forwarded
// one both ways, and SocketProxyClose removing the socket and ending
// accepts with NotFound.
func TestSocketProxy(t *testing.T) {
	root := t.TempDir()
	a := New(Config{ContainerRoot: filepath.Join(root, "containers"), SandboxRoot: t.TempDir()}, reaper.New())
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := a.SocketProxyListen(ctx, &pb.SocketProxyListenRequest{ContainerId: "../x", Index: 1}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("listen for container ../x: %v, want invalid argument", err)
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	l, err := a.SocketProxyListen(ctx, &pb.SocketProxyListenRequest{ContainerId: "c1", Index: 3, Mode: 0o660, Uid: uid, Gid: gid})
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "sockproxy", "c1", "3.sock")
	if l.GetPath() != want {
		t.Errorf("path %q, want %q", l.GetPath(), want)
	}
	st, err := os.Stat(want)
	if err != nil || st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o660 {
		t.Fatalf("listener %s: %v, %v; want a socket of mode 0660", want, st, err)
	}
	if _, err := a.SocketProxyListen(ctx, &pb.SocketProxyListenRequest{ContainerId: "c1", Index: 3}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second listen: %v, want already exists", err)
	}

	acc, err := a.SocketProxyAccept(ctx, &pb.SocketProxyAcceptRequest{ContainerId: "c1", Index: 3, WaitMs: 50})
	if err != nil || acc.GetId() != 0 {
		t.Fatalf("accept with no client: %v, %v; want id 0", acc, err)
	}
	c, err := net.Dial("unix", want)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acc, err = a.SocketProxyAccept(ctx, &pb.SocketProxyAcceptRequest{ContainerId: "c1", Index: 3, WaitMs: 5000})
	if err != nil || acc.GetId() == 0 {
		t.Fatalf("accept: %v, %v; want a connection", acc, err)
	}
	id := acc.GetId()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	r, err := a.ForwardRead(ctx, &pb.ForwardReadRequest{Id: id, Len: 16})
	if err != nil || string(r.GetData()) != "ping" {
		t.Fatalf("read: %q, %v; want ping", r.GetData(), err)
	}
	if _, err := a.ForwardWrite(ctx, &pb.ForwardWriteRequest{Id: id, Data: []byte("pong")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ForwardClose(ctx, &pb.ForwardCloseRequest{Id: id, WriteOnly: true}); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c); err != nil || string(b) != "pong" {
		t.Errorf("client read %q, %v; want pong then EOF", b, err)
	}

	// A pending accept ends when the proxy closes.
	done := make(chan error, 1)
	go func() {
		_, err := a.SocketProxyAccept(ctx, &pb.SocketProxyAcceptRequest{ContainerId: "c1", Index: 3, WaitMs: 20000})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := a.SocketProxyClose(ctx, &pb.SocketProxyCloseRequest{ContainerId: "c1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errdefs.IsNotFound(err) {
			t.Errorf("accept pending at close: %v, want not found", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("accept pending at close did not end")
	}
	if _, err := os.Lstat(filepath.Dir(want)); !os.IsNotExist(err) {
		t.Errorf("proxy directory left after close: %v", err)
	}
	if _, err := a.SocketProxyAccept(ctx, &pb.SocketProxyAcceptRequest{ContainerId: "c1", Index: 3, WaitMs: 10}); !errdefs.IsNotFound(err) {
		t.Errorf("accept after close: %v, want not found", err)
	}
}
