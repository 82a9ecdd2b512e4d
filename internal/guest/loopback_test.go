package guest

import (
	"context"
	"net"
	"slices"
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
	if latency > 2*loopbackPoll+100*time.Millisecond {
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
