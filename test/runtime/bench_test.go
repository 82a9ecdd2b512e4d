package runtime

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchFigure is the figure TestBenchPodmanRun measures.
const benchFigure = "podman run --rm busybox true (vc-runtime)"

// TestBenchPodmanRun measures, for make bench, `podman run --rm busybox
// true` with vc-runtime against the same with runc (alternating, medians
// of 3 after one warm-up run of each). It prints a BENCH line test/bench
// reads (BENCH|figure|unit|value|floor|floor is|note), or BENCH-SKIP|
// figure|reason where podman or runc is missing.
func TestBenchPodmanRun(t *testing.T) {
	if os.Getenv("VC_BENCH") == "" {
		t.Skip("a benchmark: make bench runs it (VC_BENCH=1)")
	}
	podmanPath, err := exec.LookPath("podman")
	if err != nil {
		fmt.Printf("BENCH-SKIP|%s|podman not installed\n", benchFigure)
		return
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		fmt.Printf("BENCH-SKIP|%s|runc (the floor) not installed\n", benchFigure)
		return
	}
	podman(t, "--version") // loads the images
	runcVersion := "runc"
	if out, err := exec.Command(runc, "--version").Output(); err == nil {
		runcVersion = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args := append(append([]string(nil), podmanRun...), "--rm", "docker.io/library/busybox:vc-test", "true")
	timed := func(vc bool) time.Duration {
		t.Helper()
		var cmd *exec.Cmd
		if vc {
			cmd = podmanCmd(ctx, podmanPath, args...)
		} else {
			cmd = exec.CommandContext(ctx, podmanPath, append([]string{"--runtime", runc}, args...)...)
		}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%v: %v: %s", cmd.Args, err, out)
		}
		return took
	}
	timed(false)
	timed(true)
	var vcTimes, runcTimes []time.Duration
	for range 3 {
		runcTimes = append(runcTimes, timed(false))
		vcTimes = append(vcTimes, timed(true))
	}
	vc, floor := median(vcTimes), median(runcTimes)
	fmt.Printf("BENCH|%s|s|%.3f|%.3f|same with runc (%s)|median of 3, alternating\n", benchFigure, vc.Seconds(), floor.Seconds(), runcVersion)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
