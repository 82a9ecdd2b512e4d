// Package hotplug brings hotplugged CPUs and memory online in the guest
// through sysfs, and reports what the guest supports for memory hotplug.
//
// Every function takes the sysfs root (normally "/sys") so tests can run
// on a fake tree.
package hotplug

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

const (
	cpuDir    = "devices/system/cpu"
	memoryDir = "devices/system/memory"
)

// sysfsEntries lists dir's entries named prefix<N>, sorted by N.
func sysfsEntries(dir, prefix string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type numbered struct {
		n    int
		name string
	}
	var list []numbered
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			continue
		}
		list = append(list, numbered{n, e.Name()})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].n < list[j].n })
	names := make([]string, len(list))
	for i, l := range list {
		names[i] = l.name
	}
	return names, nil
}

// PossibleCPUs counts the CPUs the kernel could ever bring online, from
// devices/system/cpu/possible ("0-3,8").
func PossibleCPUs(sysfs string) (int, error) {
	b, err := os.ReadFile(filepath.Join(sysfs, cpuDir, "possible"))
	if err != nil {
		return 0, err
	}
	return countList(strings.TrimSpace(string(b)))
}

// countList counts the members of a kernel CPU list such as "0-3,8".
func countList(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n := 0
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// onlineOffline writes "1" to the online file of offline CPUs, at most
// limit of them, and returns how many it brought online.
func onlineOffline(sysfs string, limit int) (int, error) {
	dir := filepath.Join(sysfs, cpuDir)
	cpus, err := sysfsEntries(dir, "cpu")
	if err != nil {
		return 0, err
	}
	done := 0
	for _, cpu := range cpus {
		if done >= limit {
			break
		}
		f := filepath.Join(dir, cpu, "online")
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			// cpu0 often cannot go offline and has no online file.
			continue
		}
		if err != nil {
			return done, err
		}
		if strings.TrimSpace(string(b)) != "0" {
			continue
		}
		if err := os.WriteFile(f, []byte("1"), 0); err != nil {
			return done, fmt.Errorf("online %s: %w", cpu, err)
		}
		done++
	}
	return done, nil
}

// OnlineCPUs brings n offline CPUs online, as they appear: hotplugged
// CPUs can show up in sysfs a little after the host has added them, so it
// looks again every interval until n are online or the context ends. It
// returns how many it brought online; fewer than n is an error.
func OnlineCPUs(ctx context.Context, sysfs string, n int, interval time.Duration) (int, error) {
	done := 0
	for {
		k, err := onlineOffline(sysfs, n-done)
		done += k
		if err != nil {
			return done, fmt.Errorf("nb_cpus: %w", err)
		}
		if done >= n {
			return done, nil
		}
		select {
		case <-ctx.Done():
			return done, fmt.Errorf("nb_cpus: brought %d of %d CPUs online: %w: %w", done, n, ctx.Err(), errdefs.ErrUnavailable)
		case <-time.After(interval):
		}
	}
}

// OnlineMemory writes "online" to the state of every offline memory
// block and returns how many it brought online.
func OnlineMemory(sysfs string) (int, error) {
	dir := filepath.Join(sysfs, memoryDir)
	blocks, err := sysfsEntries(dir, "memory")
	if errors.Is(err, os.ErrNotExist) {
		// No memory hotplug in this kernel: nothing can be offline.
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	done := 0
	for _, blk := range blocks {
		f := filepath.Join(dir, blk, "state")
		b, err := os.ReadFile(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return done, err
		}
		if strings.TrimSpace(string(b)) != "offline" {
			continue
		}
		if err := os.WriteFile(f, []byte("online"), 0); err != nil {
			// The kernel onlining it meanwhile (auto-online of a
			// hotplugged DIMM) makes the write fail with EINVAL.
			if b, rerr := os.ReadFile(f); rerr == nil && strings.TrimSpace(string(b)) == "online" {
				continue
			}
			return done, fmt.Errorf("online memory block %s: %w", blk, err)
		}
		done++
	}
	return done, nil
}

// probeFile is where physical addresses of hotplugged memory are written
// on kernels with CONFIG_ARCH_MEMORY_PROBE.
func probeFile(sysfs string) string { return filepath.Join(sysfs, memoryDir, "probe") }

// ProbeSupported reports whether the kernel takes memory probes.
func ProbeSupported(sysfs string) bool {
	_, err := os.Stat(probeFile(sysfs))
	return err == nil
}

// ProbeMemory writes each address, as 0x%x, to the memory probe file. It
// fails with ErrFailedPrecondition when the kernel has no probe file.
func ProbeMemory(sysfs string, addrs []uint64) error {
	p := probeFile(sysfs)
	if !ProbeSupported(sysfs) {
		return fmt.Errorf("memHotplugProbeAddr: %s does not exist (kernel without CONFIG_ARCH_MEMORY_PROBE): %w", p, errdefs.ErrFailedPrecondition)
	}
	for _, a := range addrs {
		if err := os.WriteFile(p, []byte(fmt.Sprintf("0x%x", a)), 0); err != nil {
			return fmt.Errorf("memHotplugProbeAddr: probe %#x: %w", a, err)
		}
	}
	return nil
}

// MemBlockSize reads the size of a memory block, in bytes; 0 when the
// kernel has no memory hotplug.
func MemBlockSize(sysfs string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(sysfs, memoryDir, "block_size_bytes"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil || s == "" {
		return 0, fmt.Errorf("memory block size %q is not hexadecimal: %w", s, errdefs.ErrUnknown)
	}
	return v, nil
}
