// Package kmod loads the guest's kernel modules: the image's list at boot,
// and groups that only some sandboxes use (ext4, virtio-fs, vsock, block,
// network) when first needed.
package kmod

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Modules that only some sandboxes use are loaded when first needed rather
// than at boot: under TCG each module costs the boot tens of milliseconds.
// A group is loaded in the image's list order (dependencies first).
var lazyGroups = map[string][]string{
	"ext4":     {"crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"},
	"virtiofs": {"fuse", "virtiofs"},
	"vsock":    {"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
	"blk":      {"virtio_blk"},
	"net":      {"failover", "net_failover", "virtio_net"},
}

// fsGroups names the group a file system type needs.
// overlay is not lazy: runc seals its own binary for each container start
// with an overlayfs, and without one copies the whole agent into a memfd.
var fsGroups = map[string]string{"ext4": "ext4", "ext3": "ext4", "ext2": "ext4", "virtiofs": "virtiofs"}

// deviceGroups loads a group at boot when a virtio PCI device of one of
// these device ids (vendor 0x1af4; transitional and modern ids) is there.
var deviceGroups = map[string][]string{
	"vsock": {"0x1012", "0x1053"},
	"blk":   {"0x1001", "0x1042"},
	"net":   {"0x1000", "0x1041"},
}

var lazy struct {
	sync.Mutex
	dir     string
	pending map[string][]string // group -> module paths (relative to dir) not loaded yet
}

func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// Load loads the kernel modules named in listFile, one file name
// per line relative to dir, in order; a module already loaded is fine.
// Modules of lazy groups are kept for EnsureGroup, unless the device they
// drive is present now.
func Load(listFile, dir string) error {
	b, err := os.ReadFile(listFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	group := map[string]string{}
	for g, mods := range lazyGroups {
		for _, m := range mods {
			group[m] = g
		}
	}
	start := time.Now()
	lazy.Lock()
	defer lazy.Unlock()
	lazy.dir, lazy.pending = dir, map[string][]string{}
	loaded := 0
	for _, name := range strings.Fields(string(b)) {
		if g, ok := group[moduleName(name)]; ok {
			lazy.pending[g] = append(lazy.pending[g], name)
			continue
		}
		if err := loadModule(filepath.Join(dir, name)); err != nil {
			return err
		}
		loaded++
	}
	present := virtioDevices()
	for g, ids := range deviceGroups {
		if slices.ContainsFunc(ids, func(id string) bool { return present[id] }) {
			if err := ensureLocked(g); err != nil {
				return err
			}
		}
	}
	slog.Debug("modules loaded", "count", loaded, "deferred", len(lazy.pending), "took", time.Since(start))
	return nil
}

// EnsureGroup loads a lazy group of modules ("ext4", "virtiofs", "vsock",
// "blk", "net") if it has not been yet.
func EnsureGroup(g string) error {
	lazy.Lock()
	defer lazy.Unlock()
	return ensureLocked(g)
}

// EnsureFS loads what mounting a file system of type fstype needs.
func EnsureFS(fstype string) error {
	if g, ok := fsGroups[fstype]; ok {
		return EnsureGroup(g)
	}
	return nil
}

func ensureLocked(g string) error {
	mods, ok := lazy.pending[g]
	if !ok {
		return nil
	}
	for _, m := range mods {
		if err := loadModule(filepath.Join(lazy.dir, m)); err != nil {
			return fmt.Errorf("module group %s: %w", g, err)
		}
	}
	delete(lazy.pending, g)
	slog.Debug("module group loaded", "group", g)
	return nil
}

// virtioDevices returns the device ids of the virtio PCI devices on the
// PCI bus, read in one pass (each sysfs read costs under emulation).
func virtioDevices() map[string]bool {
	ids := map[string]bool{}
	devs, _ := filepath.Glob("/sys/bus/pci/devices/*")
	for _, d := range devs {
		v, _ := os.ReadFile(filepath.Join(d, "vendor"))
		if strings.TrimSpace(string(v)) != "0x1af4" {
			continue
		}
		id, _ := os.ReadFile(filepath.Join(d, "device"))
		ids[strings.TrimSpace(string(id))] = true
	}
	return ids
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	slog.Debug("module loaded", "module", filepath.Base(path))
	return nil
}
