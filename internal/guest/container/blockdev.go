package container

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/guest/kmod"
	"github.com/virtcontainers/vc/internal/guest/pcipath"
)

// deviceBlk is the pb.Device type of a hotplugged virtio-blk disk passed
// to a container: its id is the disk's serial (what the host gives, see
// pkg/vc/device.go) or, as Kata sends it, its PCI path ("02/00").
const deviceBlk = "blk"

// blkTimeout bounds the wait for a hotplugged disk to show up.
var blkTimeout = 10 * time.Second

// blkDevice returns the guest node (/dev/vdX) of the disk with that
// serial or PCI path, waiting for it to appear.
func blkDevice(ctx context.Context, sysfs, devDir, id string) (string, error) {
	if id == "" {
		return "", invalid("id", "a blk device needs the disk's serial or PCI path as id")
	}
	// The disk is hotplugged after boot: its driver loads on demand.
	if err := kmod.EnsureGroup("blk"); err != nil {
		return "", err
	}
	if strings.Contains(id, "/") {
		p, err := pcipath.Parse(id)
		if err != nil {
			return "", fmt.Errorf("id: %w", err)
		}
		return pcipath.BlockDevice(ctx, sysfs, devDir, p, blkTimeout)
	}
	deadline := time.Now().Add(blkTimeout)
	for {
		node, err := blkBySerial(sysfs, devDir, id)
		if err == nil {
			return node, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("disk with serial %q: waited %v: %w", id, blkTimeout, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("disk with serial %q: %w", id, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// blkBySerial finds the block device whose serial (sysfs/block/X/serial)
// is serial, once its node is under devDir.
func blkBySerial(sysfs, devDir, serial string) (string, error) {
	ents, err := os.ReadDir(filepath.Join(sysfs, "block"))
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysfs, "block", e.Name(), "serial"))
		if err != nil || string(bytes.TrimSpace(b)) != serial {
			continue
		}
		node := filepath.Join(devDir, e.Name())
		if _, err := os.Stat(node); err != nil {
			return "", fmt.Errorf("%s: %w", node, errdefs.ErrNotFound)
		}
		return node, nil
	}
	return "", fmt.Errorf("no disk with serial %q: %w", serial, errdefs.ErrNotFound)
}
