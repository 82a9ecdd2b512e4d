package containerd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// TestBenchCtrRun measures, for make bench, `ctr run --rm` with the vc shim
// against the same with runc (alternating, medians), and the shim's memory
// with a running container. It prints BENCH lines test/bench reads.
func TestBenchCtrRun(t *testing.T) {
	if os.Getenv("VC_BENCH") == "" {
		t.Skip("a benchmark: make bench runs it (VC_BENCH=1)")
	}
	d := startVC(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Warm both paths once.
	for _, rt := range []string{containerd.RuncRuntime, containerd.VCRuntime} {
		if _, err := d.CtrRunTimes(ctx, 1, rt, images.BusyboxRef, "true"); err != nil {
			t.Fatal(err)
		}
	}
	// The shim's own cost: `vc run --rm` starts the same VM (the same
	// kernel, initrd, size and agent, and the user-mode NAT the shim gives a
	// container without a network namespace) through the
	// library without containerd and the shim.
	vcCLI := filepath.Join(testutil.RepoRoot(), "bin", "vc")
	vcState := t.TempDir()
	vcRun := func() (time.Duration, error) {
		cmd := exec.CommandContext(ctx, vcCLI, "--state-root", vcState, "--data-root", dataRoot(), "run", "--rm", "--factory", "off", "busybox", "--", "true")
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("vc run --rm: %w: %s", err, out)
		}
		return time.Since(t0), nil
	}
	if _, err := vcRun(); err != nil {
		t.Fatal(err)
	}
	var vcTimes, runcTimes, cliTimes []time.Duration
	for i := 0; i < 3; i++ {
		r, err := d.CtrRunTimes(ctx, 1, containerd.RuncRuntime, images.BusyboxRef, "true")
		if err != nil {
			t.Fatal(err)
		}
		v, err := d.CtrRunTimes(ctx, 1, containerd.VCRuntime, images.BusyboxRef, "true")
		if err != nil {
			t.Fatal(err)
		}
		c, err := vcRun()
		if err != nil {
			t.Fatal(err)
		}
		runcTimes, vcTimes, cliTimes = append(runcTimes, r...), append(vcTimes, v...), append(cliTimes, c)
	}
	vc, runc, cli := containerd.Median(vcTimes), containerd.Median(runcTimes), containerd.Median(cliTimes)
	fmt.Printf("BENCH|ctr run --rm busybox true (vc shim)|s|%.3f|%.3f|same with io.containerd.runc.v2 (runc 1.4.3)|median of 3, alternating\n", vc.Seconds(), runc.Seconds())
	fmt.Printf("BENCH|ctr run --rm busybox true (vc shim), the shim's own cost|s|%.3f|%.3f|vc run --rm --factory off busybox -- true: the same VM (user-mode NAT as the shim gives a container without a netns) without containerd and the shim|target 1.15; median of 3, alternating with the row above\n", vc.Seconds(), cli.Seconds())

	d.Ctr(t, "run", "-d", "--runtime", containerd.VCRuntime, images.BusyboxRef, "bench-idle", "sleep", "1000")
	defer func() {
		d.CtrErr(context.Background(), "task", "kill", "-s", "KILL", "bench-idle")
		time.Sleep(time.Second)
		d.CtrErr(context.Background(), "task", "delete", "-f", "bench-idle")
		d.CtrErr(context.Background(), "container", "delete", "bench-idle")
	}()
	time.Sleep(2 * time.Second)
	shims := d.shimPids()
	if len(shims) != 1 {
		t.Fatalf("shims %v: want one", shims)
	}
	rss := memKiB(t, shims[0], "VmRSS:")
	fmt.Printf("BENCH|shim RSS per pod (one idle container)|MiB|%.1f|18|Kata's shim, about 18 MB|target at most 15 MB; anonymous %.1f MiB\n", float64(rss)/1024, float64(memKiB(t, shims[0], "RssAnon:"))/1024)
}
