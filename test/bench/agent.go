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

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
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

// agentRTT times Health.Check over a unix socket against a raw echo of a
// similar frame over a unix socket to another process.
func agentRTT() ([]row, error) {
	bin, err := agentBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vc-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	a, err := testutil.Launch(bin, dir, "-log-level", "warn")
	if a != nil {
		defer a.Stop()
	}
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	lat := make([]time.Duration, rttCalls)
	for i := range lat {
		t := time.Now()
		if _, err := a.Health.Check(ctx, &pb.CheckRequest{}); err != nil {
			return nil, err
		}
		lat[i] = time.Since(t)
	}
	echo, err := echoRTT(filepath.Join(dir, "echo.sock"))
	if err != nil {
		return nil, err
	}
	p50, p99 := pct(lat, 50), pct(lat, 99)
	e50, e99 := pct(echo, 50), pct(echo, 99)
	return []row{
		{figure: "agent RPC Health.Check p50 (unix)", unit: "µs", value: us(p50), floor: us(e50), floorName: "raw echo, same socket type"},
		{figure: "agent RPC Health.Check p99 (unix)", unit: "µs", value: us(p99), floor: us(e99), floorName: "raw echo, same socket type"},
	}, nil
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
