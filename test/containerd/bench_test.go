package containerd_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

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
	var vcTimes, runcTimes []time.Duration
	for i := 0; i < 3; i++ {
		r, err := d.CtrRunTimes(ctx, 1, containerd.RuncRuntime, images.BusyboxRef, "true")
		if err != nil {
			t.Fatal(err)
		}
		v, err := d.CtrRunTimes(ctx, 1, containerd.VCRuntime, images.BusyboxRef, "true")
		if err != nil {
			t.Fatal(err)
		}
		runcTimes, vcTimes = append(runcTimes, r...), append(vcTimes, v...)
	}
	vc, runc := containerd.Median(vcTimes), containerd.Median(runcTimes)
	fmt.Printf("BENCH|ctr run --rm busybox true (vc shim)|s|%.3f|%.3f|same with io.containerd.runc.v2 (runc 1.4.3)|median of 3, alternating\n", vc.Seconds(), runc.Seconds())

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
