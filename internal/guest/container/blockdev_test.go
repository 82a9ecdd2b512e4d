package container

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestBlkBySerial(t *testing.T) {
	sysfs, dev := t.TempDir(), t.TempDir()
	for name, serial := range map[string]string{"vda": "other", "vdb": "blkabc-0\n", "vdc": ""} {
		os.MkdirAll(filepath.Join(sysfs, "block", name), 0o755)
		if serial != "" {
			os.WriteFile(filepath.Join(sysfs, "block", name, "serial"), []byte(serial), 0o644)
		}
	}
	// The node is not there yet: not found.
	if _, err := blkBySerial(sysfs, dev, "blkabc-0"); !errdefs.IsNotFound(err) {
		t.Fatalf("before the node: %v, want NotFound", err)
	}
	os.WriteFile(filepath.Join(dev, "vdb"), nil, 0o644)
	if got, err := blkBySerial(sysfs, dev, "blkabc-0"); err != nil || got != filepath.Join(dev, "vdb") {
		t.Fatalf("serial blkabc-0: %q, %v; want %s/vdb", got, err, dev)
	}
	if _, err := blkBySerial(sysfs, dev, "blkabc"); !errdefs.IsNotFound(err) {
		t.Fatalf("a serial's prefix: %v, want NotFound", err)
	}
}

func TestBlkBySerialWaitEnds(t *testing.T) {
	old := blkTimeout
	blkTimeout = 100 * time.Millisecond
	defer func() { blkTimeout = old }()
	sysfs := t.TempDir()
	os.MkdirAll(filepath.Join(sysfs, "block"), 0o755)
	start := time.Now()
	_, err := blkDevice(context.Background(), sysfs, t.TempDir(), "nope")
	if !errdefs.IsNotFound(err) || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("missing disk: %v after %v, want NotFound after the timeout", err, time.Since(start))
	}
}
