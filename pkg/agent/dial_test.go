package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestParseAddress(t *testing.T) {
	good := []struct {
		in   string
		want Address
	}{
		{"unix:///run/vc/agent.sock", Address{Scheme: "unix", Path: "/run/vc/agent.sock"}},
		{"unix:///tmp/a b:1", Address{Scheme: "unix", Path: "/tmp/a b:1"}},
		{"vsock://3:1024", Address{Scheme: "vsock", CID: 3, Port: 1024}},
		{"vsock://4294967295:4294967295", Address{Scheme: "vsock", CID: 4294967295, Port: 4294967295}},
		{"hvsock:///run/vc/hv.sock:1024", Address{Scheme: "hvsock", Path: "/run/vc/hv.sock", Port: 1024}},
		{"hvsock:///a:b/hv.sock:7", Address{Scheme: "hvsock", Path: "/a:b/hv.sock", Port: 7}},
	}
	for _, tc := range good {
		got, err := ParseAddress(tc.in)
		if err != nil {
			t.Errorf("ParseAddress(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseAddress(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.in {
			t.Errorf("ParseAddress(%q).String() = %q", tc.in, s)
		}
	}

	bad := []struct{ in, says string }{
		{"", "want unix:///path"},
		{"/run/agent.sock", "want unix:///path"},
		{"tcp://1.2.3.4:5", `unknown scheme "tcp"`},
		{"unix://relative.sock", "must be absolute"},
		{"unix://", "must be absolute"},
		{"vsock://3", "want vsock://CID:PORT"},
		{"vsock://x:1024", `CID "x"`},
		{"vsock://-1:1024", `CID "-1"`},
		{"vsock://3:", `port ""`},
		{"vsock://3:4294967296", `port "4294967296"`},
		{"hvsock:///run/hv.sock", "want hvsock:///path/to/socket:PORT"},
		{"hvsock:///run/hv.sock:", `port "" is not`},
		{"hvsock://run/hv.sock:3", "must be absolute"},
		{"hvsock://", "want hvsock:///path"},
		{"hvsock:///run/hv.sock:port", `port "port"`},
	}
	for _, tc := range bad {
		_, err := ParseAddress(tc.in)
		if err == nil {
			t.Errorf("ParseAddress(%q) succeeded", tc.in)
			continue
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseAddress(%q): %v is not InvalidArgument", tc.in, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.says) || !strings.Contains(msg, `"`+tc.in+`"`) {
			t.Errorf("ParseAddress(%q): error %q should name the address and say %q", tc.in, msg, tc.says)
		}
	}
}

// fakeMuxer is a hybrid vsock muxer: it reads "CONNECT <port>\n", answers
// with reply(port) and then echoes what it receives.
func fakeMuxer(t *testing.T, reply func(line string) string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hv.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				ans := reply(strings.TrimSuffix(line, "\n"))
				if ans == "" {
					return // hang up
				}
				// The reply and the first bytes of the stream in one write:
				// the dialer must not swallow the latter.
				if _, err := io.WriteString(c, ans+"hello"); err != nil {
					return
				}
				io.Copy(c, r)
			}()
		}
	}()
	return sock
}

func TestDialHybridVsock(t *testing.T) {
	var got string
	sock := fakeMuxer(t, func(line string) string {
		got = line
		return "OK 1073741824\n"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := Dial(ctx, "hvsock://"+sock+":1024")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got != "CONNECT 1024" {
		t.Errorf("muxer got %q, want %q", got, "CONNECT 1024")
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "hello" {
		t.Fatalf("first stream bytes %q, want hello (handshake over-read?)", buf)
	}
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "ping" {
		t.Fatalf("echo %q, want ping", buf)
	}
}

func TestDialHybridVsockRefused(t *testing.T) {
	for name, reply := range map[string]string{
		"error line": "ERR no listener on port 1024\n",
		"hang up":    "",
		"endless":    strings.Repeat("x", 200) + "\n",
	} {
		t.Run(name, func(t *testing.T) {
			sock := fakeMuxer(t, func(string) string { return reply })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := Dial(ctx, "hvsock://"+sock+":1024")
			if err == nil {
				conn.Close()
				t.Fatal("handshake succeeded")
			}
			if !strings.Contains(err.Error(), "CONNECT 1024") || !strings.Contains(err.Error(), sock) {
				t.Fatalf("error %q should name the port and the address", err)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestDialHybridVsockTimeout(t *testing.T) {
	// A muxer that never answers.
	sock := filepath.Join(t.TempDir(), "hv.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, "hvsock://"+sock+":1024")
	if err == nil {
		t.Fatal("handshake with a silent muxer succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is not DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to time out", d)
	}
}

func TestDialUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "a.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("x"))
			c.Close()
		}
	}()
	conn, err := Dial(context.Background(), "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b, err)
	}

	_, err = Dial(context.Background(), "unix://"+sock+".missing")
	if err == nil || !strings.Contains(err.Error(), sock+".missing") {
		t.Fatalf("dialing a missing socket: %v", err)
	}
}

func TestDialVsockUnreachable(t *testing.T) {
	// No guest has CID 4294967294 here; the dial fails (without
	// vhost-vsock, at once) and the error names the address.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, "vsock://4294967294:1024")
	if err == nil {
		t.Fatal("dial succeeded")
	}
	if !strings.Contains(err.Error(), "vsock://4294967294:1024") {
		t.Fatalf("error %q does not name the address", err)
	}
}

// A client from NewClient fails with errdefs sentinels for the agent's
// status errors, and leaves other errors (a closed connection) alone.
func TestNewClientNativeErrors(t *testing.T) {
	srvConn, cliConn := net.Pipe()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.Register("vc.test", map[string]ttrpc.Method{
		"NotFound": func(ctx context.Context, unmarshal func(any) error) (any, error) {
			return nil, errgrpc.ToGRPC(fmt.Errorf("container x: %w", errdefs.ErrNotFound))
		},
	})
	l := &oneConnListener{conn: srvConn, done: make(chan struct{})}
	go srv.Serve(context.Background(), l)
	defer srv.Close()
	c := NewClient(cliConn)
	var resp emptypb.Empty
	err = c.Call(context.Background(), "vc.test", "NotFound", &emptypb.Empty{}, &resp)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "container x") {
		t.Errorf("call: %v, want a NotFound naming the container", err)
	}
	c.Close()
	err = c.Call(context.Background(), "vc.test", "NotFound", &emptypb.Empty{}, &resp)
	if !errors.Is(err, ttrpc.ErrClosed) {
		t.Errorf("call on a closed client: %v, want ttrpc.ErrClosed kept", err)
	}
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	conn net.Conn
	once sync.Once
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.conn })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }
