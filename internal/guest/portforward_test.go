package guest

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

// upperEcho serves one connection on l: it answers what it reads in upper
// case once the peer has closed its write side, then closes.
func upperEcho(t *testing.T, l net.Listener) {
	t.Helper()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		for i := range b {
			if b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
		c.Write(b)
	}()
}

func listenerPort(l net.Listener) uint32 { return uint32(l.Addr().(*net.TCPAddr).Port) }

// TestPortForward drives one forwarded connection through the handlers:
// bytes both ways, a half close that the server sees as EOF, eof at the
// end, and the connection forgotten after ForwardClose.
func TestPortForward(t *testing.T) {
	a := New(Config{ContainerRoot: t.TempDir(), SandboxRoot: t.TempDir()}, reaper.New())
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	upperEcho(t, l)
	d, err := a.ForwardDial(ctx, &pb.ForwardDialRequest{Port: listenerPort(l)})
	if err != nil {
		t.Fatal(err)
	}
	if want := l.Addr().String(); d.GetAddress() != want {
		t.Errorf("connected to %s, want %s", d.GetAddress(), want)
	}
	if _, err := a.ForwardWrite(ctx, &pb.ForwardWriteRequest{Id: d.GetId(), Data: []byte("hello, ")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ForwardWrite(ctx, &pb.ForwardWriteRequest{Id: d.GetId(), Data: []byte("guest")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ForwardClose(ctx, &pb.ForwardCloseRequest{Id: d.GetId(), WriteOnly: true}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		r, err := a.ForwardRead(ctx, &pb.ForwardReadRequest{Id: d.GetId(), Len: 3})
		if err != nil {
			t.Fatalf("read after %q: %v", got, err)
		}
		if len(r.GetData()) > 3 {
			t.Fatalf("read %d bytes, asked for at most 3", len(r.GetData()))
		}
		got = append(got, r.GetData()...)
		if r.GetEof() {
			break
		}
	}
	if string(got) != "HELLO, GUEST" {
		t.Errorf("read %q, want %q", got, "HELLO, GUEST")
	}
	if _, err := a.ForwardClose(ctx, &pb.ForwardCloseRequest{Id: d.GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ForwardRead(ctx, &pb.ForwardReadRequest{Id: d.GetId()}); !errdefs.IsNotFound(err) {
		t.Errorf("read after close: %v, want not found", err)
	}
	if _, err := a.ForwardClose(ctx, &pb.ForwardCloseRequest{Id: d.GetId()}); !errdefs.IsNotFound(err) {
		t.Errorf("second close: %v, want not found", err)
	}
}

// TestPortForwardDial: a port nothing listens on is Unavailable; a server
// on ::1 only is reached by falling back from 127.0.0.1; port 0 names the
// field; a read blocked on a quiet connection ends with its call's
// deadline, and ForwardClose ends one with no deadline.
func TestPortForwardDial(t *testing.T) {
	a := New(Config{ContainerRoot: t.TempDir(), SandboxRoot: t.TempDir()}, reaper.New())
	t.Cleanup(a.Close)
	ctx := context.Background()

	if _, err := a.ForwardDial(ctx, &pb.ForwardDialRequest{}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "port") {
		t.Errorf("port 0: %v, want invalid argument naming port", err)
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := listenerPort(free)
	free.Close()
	if _, err := a.ForwardDial(ctx, &pb.ForwardDialRequest{Port: port}); !errdefs.IsUnavailable(err) {
		t.Errorf("closed port %d: %v, want unavailable", port, err)
	}

	l6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("no ::1 here (%v): the fallback is not tested", err)
	} else {
		defer l6.Close()
		upperEcho(t, l6)
		d, err := a.ForwardDial(ctx, &pb.ForwardDialRequest{Port: listenerPort(l6)})
		if err != nil {
			t.Fatalf("dial a server on ::1 only: %v", err)
		}
		if want := "[::1]:" + strconv.Itoa(int(listenerPort(l6))); d.GetAddress() != want {
			t.Errorf("connected to %s, want %s", d.GetAddress(), want)
		}
	}

	quiet, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	d, err := a.ForwardDial(ctx, &pb.ForwardDialRequest{Port: listenerPort(quiet)})
	if err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = a.ForwardRead(tctx, &pb.ForwardReadRequest{Id: d.GetId()})
	cancel()
	if err == nil || tctx.Err() == nil {
		t.Errorf("read of a quiet connection: %v, want its deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.ForwardRead(ctx, &pb.ForwardReadRequest{Id: d.GetId()})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := a.ForwardClose(ctx, &pb.ForwardCloseRequest{Id: d.GetId()}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errdefs.IsNotFound(err) {
			t.Errorf("read ended by close: %v, want not found", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ForwardClose did not end a blocked read")
	}
}
