package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/ttrpc"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/oci"
)

const rttCalls = 10000

func init() {
	register("agent-rtt", agentRTT)
}

func agentBinary() (string, error) {
	if p := os.Getenv("VC_AGENT_BIN"); p != "" {
		return p, nil
	}
	p := filepath.Join(testutil.RepoRoot(), "bin", "vc-agent")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no agent binary (run make build): %w", err)
	}
	return p, nil
}

// agentRTT times Health.Check and StatsContainer (on a running container)
// over a unix socket, and Health.Check with many calls in flight on the
// one connection, against a raw echo of a similar frame over a unix
// socket to another process. The agent runs on the host, as root.
func agentRTT() ([]row, error) {
	bin, err := agentBinary()
	if err != nil {
		return nil, err
	}
	a, dir, stop, err := launchAgent(bin)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx := context.Background()
	lat, err := serial(func() error {
		_, err := a.Health.Check(ctx, &pb.CheckRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	// The same calls carrying a sampled trace context (tracing on): the
	// agent records a span of each, collected as the host would.
	traced, err := tracedChecks(ctx, a)
	if err != nil {
		return nil, err
	}
	// A real container, its init sleeping, for StatsContainer and for
	// a WaitProcess that stays in flight below.
	id, remove, err := sleepingContainer(ctx, a, dir)
	if err != nil {
		return nil, err
	}
	defer remove()
	stats, err := serial(func() error {
		_, err := a.Svc.StatsContainer(ctx, &pb.StatsContainerRequest{ContainerId: id})
		return err
	})
	if err != nil {
		return nil, err
	}
	conc, serialRate, concRate, err := inFlight(ctx, a, id)
	if err != nil {
		return nil, err
	}
	echo, err := echoRTT(filepath.Join(dir, "echo.sock"))
	if err != nil {
		return nil, err
	}
	e50, e99 := us(pct(echo, 50)), us(pct(echo, 99))
	const echoName = "raw echo, same socket type"
	return []row{
		{figure: "agent RPC Health.Check p50 (unix)", unit: "µs", value: us(pct(lat, 50)), floor: e50, floorName: echoName},
		{figure: "agent RPC Health.Check p99 (unix)", unit: "µs", value: us(pct(lat, 99)), floor: e99, floorName: echoName},
		{figure: "agent RPC Health.Check p50 traced (unix)", unit: "µs", value: us(pct(traced, 50)), floor: us(pct(lat, 50)), floorName: "Health.Check untraced",
			note: "a sampled traceparent in the metadata: the agent records a span per call (docs/observability.md)"},
		{figure: "agent RPC StatsContainer p50 (unix)", unit: "µs", value: us(pct(stats, 50)), floor: e50, floorName: echoName, note: "a running container's cgroup stats"},
		{figure: "agent RPC StatsContainer p99 (unix)", unit: "µs", value: us(pct(stats, 99)), floor: e99, floorName: echoName},
		{figure: fmt.Sprintf("agent RPC Health.Check p50 with %d in flight on one connection", inFlightCalls), unit: "µs", value: us(pct(conc, 50)), floor: e50, floorName: echoName,
			note: fmt.Sprintf("one of them a WaitProcess blocked throughout; %.0f calls/s against %.0f one at a time", concRate, serialRate)},
		{figure: fmt.Sprintf("agent RPC throughput, %d in flight against one at a time", inFlightCalls), unit: "calls/s", value: concRate, floor: serialRate, floorName: "Health.Check one at a time",
			note: "higher is better; 2 host cores shared by client, agent and others"},
	}, nil
}

// launchAgent starts the agent binary bin on the host, its files in a
// temporary directory, which stop removes.
func launchAgent(bin string) (*testutil.Agent, string, func(), error) {
	dir, err := os.MkdirTemp("", "vc-bench-")
	if err != nil {
		return nil, "", nil, err
	}
	a, err := testutil.Launch(bin, dir, "-log-level", "warn")
	stop := func() {
		if a != nil {
			a.Stop()
		}
		os.RemoveAll(dir)
	}
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	return a, dir, stop, nil
}

// sleepingContainer creates and starts a busybox container in agent a
// (its rootfs under dir), its init sleeping; remove removes it.
func sleepingContainer(ctx context.Context, a *testutil.Agent, dir string) (string, func(), error) {
	root, err := rootfs.Busybox(filepath.Join(dir, "rootfs"))
	if err != nil {
		return "", nil, err
	}
	id := fmt.Sprintf("bench-%d", os.Getpid())
	spec := oci.ToProto(oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false))
	spec.Root.Path = root
	if _, err := a.Svc.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: id, ExecId: id, OCI: spec}); err != nil {
		return "", nil, fmt.Errorf("create container: %w", err)
	}
	remove := func() { a.Svc.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: id, Timeout: 5}) }
	if _, err := a.Svc.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: id}); err != nil {
		remove()
		return "", nil, fmt.Errorf("start container: %w", err)
	}
	return id, remove, nil
}

// inFlightCalls is how many RPCs the concurrency figure keeps in flight
// on one connection.
const inFlightCalls = 32

// serial times rttCalls calls of call, one at a time.
func serial(call func() error) ([]time.Duration, error) { return serialN(rttCalls, call) }

// serialN times n calls of call, one at a time.
func serialN(n int, call func() error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	for i := range lat {
		t := time.Now()
		if err := call(); err != nil {
			return nil, err
		}
		lat[i] = time.Since(t)
	}
	return lat, nil
}

// inFlight keeps inFlightCalls RPCs in flight on the agent's one
// connection: a WaitProcess on container id's init (sleeping, so it does
// not return: head-of-line blocking would stall the rest) and
// inFlightCalls-1 loops of Health.Check. It returns the Health calls'
// latencies, and the call rates one at a time and concurrently.
func inFlight(ctx context.Context, a *testutil.Agent, id string) ([]time.Duration, float64, float64, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		_, err := a.Svc.WaitProcess(wctx, &pb.WaitProcessRequest{ContainerId: id, ExecId: id})
		waited <- err
	}()
	check := func() error {
		_, err := a.Health.Check(ctx, &pb.CheckRequest{})
		return err
	}
	t := time.Now()
	if _, err := serial(check); err != nil {
		return nil, 0, 0, err
	}
	serialRate := rttCalls / time.Since(t).Seconds()
	per := rttCalls / (inFlightCalls - 1)
	lats := make([][]time.Duration, inFlightCalls-1)
	errs := make(chan error, inFlightCalls-1)
	t = time.Now()
	for g := range lats {
		go func() {
			lats[g] = make([]time.Duration, per)
			for i := range per {
				s := time.Now()
				if err := check(); err != nil {
					errs <- err
					return
				}
				lats[g][i] = time.Since(s)
			}
			errs <- nil
		}()
	}
	for range lats {
		if err := <-errs; err != nil {
			return nil, 0, 0, err
		}
	}
	concRate := float64(per*len(lats)) / time.Since(t).Seconds()
	select {
	case err := <-waited:
		return nil, 0, 0, fmt.Errorf("WaitProcess on a sleeping process returned: %v", err)
	default:
	}
	return slices.Concat(lats...), serialRate, concRate, nil
}

// echoRTT round-trips a 16-byte frame (a ttRPC header and a tiny body) with
// an echo server process over a unix socket.
func echoRTT(sock string) ([]time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "echo-server", sock)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var c net.Conn
	for i := 0; ; i++ {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		if i > 500 {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.Close()
	buf := make([]byte, 16)
	lat := make([]time.Duration, rttCalls)
	for i := range lat {
		t := time.Now()
		if _, err := c.Write(buf); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		lat[i] = time.Since(t)
	}
	return lat, nil
}

func echoServer(sock string) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		os.Exit(1)
	}
	c, err := l.Accept()
	if err != nil {
		os.Exit(1)
	}
	io.Copy(c, c)
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// tracedChecks times Health.Check calls carrying a sampled W3C trace
// context, the agent's spans collected (GetTraceSpans) every 1000 calls,
// outside the timing, as the host collects after each operation.
func tracedChecks(ctx context.Context, a *testutil.Agent) ([]time.Duration, error) {
	md := ttrpc.MD{}
	md.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	tctx := ttrpc.WithMetadata(ctx, md)
	tr := pb.NewTracingClient(a.Client)
	lat := make([]time.Duration, rttCalls)
	for i := range lat {
		if i%1000 == 0 {
			if _, err := tr.GetTraceSpans(ctx, &pb.GetTraceSpansRequest{}); err != nil {
				return nil, fmt.Errorf("GetTraceSpans: %w", err)
			}
		}
		t := time.Now()
		if _, err := a.Health.Check(tctx, &pb.CheckRequest{}); err != nil {
			return nil, err
		}
		lat[i] = time.Since(t)
	}
	return lat, nil
}
