// Package pcipath resolves PCI paths, the guest-independent names the host
// gives hotplugged devices, to guest block devices.
//
// A PCI path lists a device's slot on the root bus, then its slot on the
// secondary bus of each bridge in between, as Kata Containers does:
// "02/00" is the device in slot 0 behind the bridge in slot 2 of bus 0.
// Each element is a hexadecimal slot (0-1f), optionally followed by ".F",
// a function number (0-7).
package pcipath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// SlotFn is a device's slot and function on a bus.
type SlotFn struct {
	Slot, Fn uint8
}

func (s SlotFn) String() string {
	if s.Fn == 0 {
		return fmt.Sprintf("%02x", s.Slot)
	}
	return fmt.Sprintf("%02x.%x", s.Slot, s.Fn)
}

// Path is a PCI path.
type Path []SlotFn

func (p Path) String() string {
	parts := make([]string, len(p))
	for i, s := range p {
		parts[i] = s.String()
	}
	return strings.Join(parts, "/")
}

// maxDepth bounds the bridges a path may cross (PCIe allows far fewer).
const maxDepth = 16

// Parse parses a PCI path such as "02/00" or "03.1".
func Parse(s string) (Path, error) {
	if s == "" {
		return nil, fmt.Errorf("empty PCI path: %w", errdefs.ErrInvalidArgument)
	}
	parts := strings.Split(s, "/")
	if len(parts) > maxDepth {
		return nil, fmt.Errorf("PCI path %q: more than %d elements: %w", s, maxDepth, errdefs.ErrInvalidArgument)
	}
	p := make(Path, 0, len(parts))
	for _, part := range parts {
		slot, fn, hasFn := strings.Cut(part, ".")
		v, err := strconv.ParseUint(slot, 16, 8)
		if err != nil || slot == "" || len(slot) > 2 || v > 0x1f {
			return nil, fmt.Errorf("PCI path %q: bad slot %q: %w", s, slot, errdefs.ErrInvalidArgument)
		}
		sf := SlotFn{Slot: uint8(v)}
		if hasFn {
			f, err := strconv.ParseUint(fn, 16, 8)
			if err != nil || len(fn) != 1 || f > 7 {
				return nil, fmt.Errorf("PCI path %q: bad function %q: %w", s, fn, errdefs.ErrInvalidArgument)
			}
			sf.Fn = uint8(f)
		}
		p = append(p, sf)
	}
	return p, nil
}

// FromSlots makes a path of function-0 devices from slot numbers, the
// form AddSwapRequest carries.
func FromSlots(slots []uint32) (Path, error) {
	if len(slots) == 0 {
		return nil, fmt.Errorf("empty PCI path: %w", errdefs.ErrInvalidArgument)
	}
	if len(slots) > maxDepth {
		return nil, fmt.Errorf("PCI path %v: more than %d elements: %w", slots, maxDepth, errdefs.ErrInvalidArgument)
	}
	p := make(Path, len(slots))
	for i, s := range slots {
		if s > 0x1f {
			return nil, fmt.Errorf("PCI path %v: slot %#x out of range 0-0x1f: %w", slots, s, errdefs.ErrInvalidArgument)
		}
		p[i] = SlotFn{Slot: uint8(s)}
	}
	return p, nil
}

// Device returns the sysfs directory of the device at p
// (sysfs/bus/pci/devices/DDDD:BB:SS.F), following bridges through their
// pci_bus entries. It fails with ErrNotFound while the device or a bridge
// on the way is not there.
func (p Path) Device(sysfs string) (string, error) {
	if len(p) == 0 {
		return "", fmt.Errorf("empty PCI path: %w", errdefs.ErrInvalidArgument)
	}
	devices := filepath.Join(sysfs, "bus", "pci", "devices")
	bus := "0000:00"
	for i, sf := range p {
		dev := filepath.Join(devices, fmt.Sprintf("%s:%02x.%x", bus, sf.Slot, sf.Fn))
		if _, err := os.Stat(dev); err != nil {
			return "", fmt.Errorf("PCI path %s: %s: %w", p, dev, errdefs.ErrNotFound)
		}
		if i == len(p)-1 {
			return dev, nil
		}
		ents, err := os.ReadDir(filepath.Join(dev, "pci_bus"))
		if err != nil || len(ents) == 0 {
			return "", fmt.Errorf("PCI path %s: %s is not a bridge (no secondary bus yet): %w", p, dev, errdefs.ErrNotFound)
		}
		if len(ents) != 1 {
			return "", fmt.Errorf("PCI path %s: bridge %s has %d secondary buses: %w", p, dev, len(ents), errdefs.ErrFailedPrecondition)
		}
		bus = ents[0].Name()
	}
	panic("unreachable")
}

// blockName returns the name of the block device (e.g. "vda") of the
// PCI device at sysfs directory dev: virtio-blk puts it under
// virtioN/block, other drivers directly under block.
func blockName(dev string) (string, error) {
	var names []string
	for _, pattern := range []string{"virtio*/block/*", "block/*"} {
		m, _ := filepath.Glob(filepath.Join(dev, pattern))
		names = append(names, m...)
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("%s has no block device: %w", dev, errdefs.ErrNotFound)
	case 1:
		return filepath.Base(names[0]), nil
	}
	sort.Strings(names)
	return "", fmt.Errorf("%s has several block devices %v: %w", dev, names, errdefs.ErrFailedPrecondition)
}

// BlockDevice waits up to timeout for the block device of the PCI device
// at p to appear, in sysfs and as a node under devDir, and returns the
// node's path, such as /dev/vdb. It fails with ErrNotFound when the wait
// ends first.
func BlockDevice(ctx context.Context, sysfs, devDir string, p Path, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		node, err := blockDevice(sysfs, devDir, p)
		if err == nil || !errors.Is(err, errdefs.ErrNotFound) {
			return node, err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("waited %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func blockDevice(sysfs, devDir string, p Path) (string, error) {
	dev, err := p.Device(sysfs)
	if err != nil {
		return "", err
	}
	name, err := blockName(dev)
	if err != nil {
		return "", fmt.Errorf("PCI path %s: %w", p, err)
	}
	node := filepath.Join(devDir, name)
	st, err := os.Stat(node)
	if err != nil {
		return "", fmt.Errorf("PCI path %s: %s has no device node yet: %w", p, name, errdefs.ErrNotFound)
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return "", fmt.Errorf("PCI path %s: %s is not a block device: %w", p, node, errdefs.ErrFailedPrecondition)
	}
	return node, nil
}
