package containerd_test

import (
	"context"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/internal/testutil/images"
)

// TestRuncCtrRunTime measures `ctr run --rm --runtime io.containerd.runc.v2
// busybox true` (median of 5): the floor the vc shim's cold start is
// compared with.
func TestRuncCtrRunTime(t *testing.T) {
	c := containerd.StartContainerd(t, containerd.Options{})
	c.ImportImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One unmeasured run warms the page cache and the snapshotter.
	if _, err := c.CtrRunTimes(ctx, 1, containerd.RuncRuntime, images.BusyboxRef, "true"); err != nil {
		t.Fatal(err)
	}
	times, err := c.CtrRunTimes(ctx, 5, containerd.RuncRuntime, images.BusyboxRef, "true")
	if err != nil {
		t.Fatal(err)
	}
	med := containerd.Median(times)
	t.Logf("ctr run --rm --runtime %s busybox true: median %v of %v", containerd.RuncRuntime, med.Round(time.Millisecond), times)
	if med <= 0 || med > 30*time.Second {
		t.Errorf("median %v: implausible", med)
	}
}
