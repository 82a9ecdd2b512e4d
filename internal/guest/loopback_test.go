package guest

import (
	"context"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

func hasListener(r *pb.ShareLoopbackResponse, proto string, port uint32) bool {
	return slices.ContainsFunc(r.GetListeners(), func(l *pb.Listener) bool {
		return l.GetProtocol() == proto && l.GetPort() == port
	})
}

// TestShareLoopback (in the test's network namespace): a new listener
// ends a waiting ShareLoopback within the poll interval with a new
// generation; output read after it is held until a call acknowledges
// that generation; a closed listener leaves the set; bad host ports are
// refused naming the field.
func TestShareLoopback(t *testing.T) {
	a := New(Config{ContainerRoot: t.TempDir(), SandboxRoot: t.TempDir()}, reaper.New())
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{})
	if err != nil || first.GetGeneration() == 0 {
		t.Fatalf("first call: %v, %v; want a generation at once", first, err)
	}
	gen := first.GetGeneration()

	// A listener appears while the host waits.
	type result struct {
		r   *pb.ShareLoopbackResponse
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	go func() {
		r, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{Seen: gen, WaitMs: 5000})
		got <- result{r, err, time.Now()}
	}()
	time.Sleep(200 * time.Millisecond)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	res := <-got
	if res.err != nil || res.r.GetGeneration() <= gen || !hasListener(res.r, "tcp", listenerPort(l)) {
		t.Fatalf("after a listen: %v, %v; want generation > %d with tcp/%d", res.r, res.err, gen, listenerPort(l))
	}
	latency := res.at.Sub(opened)
	t.Logf("listener detected after %v (poll %v)", latency, loopbackPoll)
	if latency > 10*loopbackPoll {
		t.Errorf("listener detected after %v, want within about %v", latency, loopbackPoll)
	}
	gen = res.r.GetGeneration()
	// Acknowledge it: the host serves it now.
	if _, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{Seen: gen}); err != nil {
		t.Fatal(err)
	}

	// Output read after a new listener waits for the acknowledgement.
	l2, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	held := make(chan time.Time, 1)
	go func() {
		a.holdForListeners(ctx)
		held <- time.Now()
	}()
	select {
	case <-held:
		t.Fatal("output not held for a new listener")
	case <-time.After(300 * time.Millisecond):
	}
	r, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{Seen: gen})
	if err != nil || !hasListener(r, "tcp", listenerPort(l2)) {
		t.Fatalf("second listener: %v, %v", r, err)
	}
	acked := time.Now()
	if _, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{Seen: r.GetGeneration()}); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-held:
		t.Logf("output held %v past the listener's acknowledgement", at.Sub(acked))
	case <-time.After(2 * time.Second):
		t.Fatal("output still held after the acknowledgement")
	}
	gen = r.GetGeneration()

	// A closed listener leaves the set.
	l.Close()
	r, err = a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{Seen: gen, WaitMs: 5000})
	if err != nil || r.GetGeneration() <= gen || hasListener(r, "tcp", listenerPort(l)) {
		t.Fatalf("after close: %v, %v; want a generation without tcp/%d", r, err, listenerPort(l))
	}

	for _, req := range []*pb.ShareLoopbackRequest{
		{HostTcp: []uint32{80}},
		{HostTcp: []uint32{70000}, Host: "10.0.2.2"},
	} {
		if _, err := a.ShareLoopback(ctx, req); err == nil {
			t.Errorf("%v: accepted", req)
		}
	}
}

// TestShareLoopbackHostPorts: the host's ports are served on 127.0.0.1
// and relayed (TCP and UDP) to the host address given (here 127.0.0.2,
// standing for the NAT's gateway); a port taken already is refused; the
// mirrors are not listed as the guest's listeners; an empty list ends
// them.
func TestShareLoopbackHostPorts(t *testing.T) {
	a := New(Config{ContainerRoot: t.TempDir(), SandboxRoot: t.TempDir()}, reaper.New())
	t.Cleanup(a.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	upperEcho(t, srv)
	port := listenerPort(srv)
	usrv, err := net.ListenPacket("udp4", "127.0.0.2:"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer usrv.Close()
	go func() {
		b := make([]byte, 100)
		n, from, err := usrv.ReadFrom(b)
		if err == nil {
			usrv.WriteTo([]byte(strings.ToUpper(string(b[:n]))), from)
		}
	}()
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	r, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{Host: "127.0.0.2", HostTcp: []uint32{port, listenerPort(busy)}, HostUdp: []uint32{port}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"tcp/" + strconv.Itoa(int(listenerPort(busy)))}; !slices.Equal(r.GetRefused(), want) {
		t.Errorf("refused %v, want %v", r.GetRefused(), want)
	}
	if hasListener(r, "tcp", port) || hasListener(r, "udp", port) {
		t.Errorf("the mirrors of port %d are listed as the guest's: %v", port, r.GetListeners())
	}
	c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(port)))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "tcp")
	c.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(c); string(b) != "TCP" {
		t.Errorf("tcp through the mirror: %q, want TCP", b)
	}
	c.Close()
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.WriteTo([]byte("udp"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	u.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 100)
	n, from, err := u.ReadFrom(b)
	if err != nil || string(b[:n]) != "UDP" || from.(*net.UDPAddr).Port != int(port) {
		t.Errorf("udp through the mirror: %q from %v, %v; want UDP from port %d", b[:n], from, err, port)
	}

	if _, err := a.ShareLoopback(ctx, &pb.ShareLoopbackRequest{}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(int(port))); err == nil {
		c.Close()
		t.Error("the mirror still listens after an empty list")
	}
}
