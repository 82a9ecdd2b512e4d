package qemu

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// A VM resizes by ACPI hotplug: vCPUs are device_add'ed into the free
// places query-hotpluggable-cpus reports and device_del'ed (the guest
// takes them offline as it ejects them); memory comes in
// MemoryStepMiB pc-dimms, each over a memory-backend-ram object,
// removed newest first. QEMU is asked what is plugged each time, so a
// resize from another process (Attach) sees the same VM.

// Size asks QEMU for the vCPUs and memory the VM has now.
func (v *qemuVM) Size(ctx context.Context) (hypervisor.Size, error) {
	q, err := v.running()
	if err != nil {
		return hypervisor.Size{}, err
	}
	cpus, err := q.QueryHotpluggableCPUs(ctx)
	if err != nil {
		return hypervisor.Size{}, fmt.Errorf("vm %s: %w", v.id, err)
	}
	dimms, err := v.dimms(ctx, q)
	if err != nil {
		return hypervisor.Size{}, err
	}
	n := 0
	for _, c := range cpus {
		if c.QOMPath != "" {
			n++
		}
	}
	v.mu.Lock()
	mem := v.cfg.FixedMemoryMiB
	v.mu.Unlock()
	return hypervisor.Size{CPUs: uint32(n), MemoryMiB: mem + uint32(len(dimms))*hypervisor.MemoryStepMiB}, nil
}

// SetCPUs plugs or unplugs vCPUs until the VM has n.
func (v *qemuVM) SetCPUs(ctx context.Context, want uint32) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	q, err := v.running()
	if err != nil {
		return err
	}
	v.mu.Lock()
	fixed, maxCPUs, accel := v.cfg.FixedCPUs, v.cfg.MaxCPUs, v.accel
	v.mu.Unlock()
	switch {
	case want > maxCPUs:
		return fmt.Errorf("vm %s: %d vCPUs: more than its max_cpus %d: %w", v.id, want, maxCPUs, errdefs.ErrResourceExhausted)
	case want < fixed:
		return fmt.Errorf("vm %s: %d vCPUs: fewer than the %d it booted with and cannot unplug: %w", v.id, want, fixed, errdefs.ErrResourceExhausted)
	}
	n := int(want) // at most max_cpus: a count of places
	places, err := q.QueryHotpluggableCPUs(ctx)
	if err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	// In core order: plugged from the lowest free place, unplugged from
	// the highest plugged one.
	slices.SortFunc(places, func(a, b qmp.HotpluggableCPU) int { return topologyKey(a.Props) - topologyKey(b.Props) })
	var present, free []qmp.HotpluggableCPU
	for _, p := range places {
		if p.QOMPath == "" {
			free = append(free, p)
		} else {
			present = append(present, p)
		}
	}
	begin := time.Now()
	switch have := len(present); {
	case n > have:
		var added []cpuDevice
		for _, p := range free[:n-have] {
			c := cpuDevice{ID: cpuDeviceID(p.Props), Driver: p.Type, Topology: p.Props}
			if err := v.plugCPU(ctx, q, c); err != nil {
				v.undoCPUs(ctx, q, added, false)
				return err
			}
			added = append(added, c)
		}
		v.log.Info("vCPUs hotplugged", "from", have, "to", n, "took", time.Since(begin).Round(time.Millisecond))
	case n < have && accel != hypervisor.AccelKVM:
		// Measured with QEMU 7.2: after a vCPU that ran is unplugged,
		// multi-threaded TCG crashes (a segfault in the next hotplug),
		// and a vCPU plugged again aborts it (no translation context
		// left); single-threaded TCG aborts on the unplug itself.
		return fmt.Errorf("vm %s: %d vCPUs: QEMU under TCG cannot unplug a vCPU (it crashes), so the %d plugged stay: %w", v.id, n, have, errdefs.ErrNotImplemented)
	case n < have:
		var removable []cpuDevice
		for _, p := range present {
			if dir, id := path.Split(p.QOMPath); dir == "/machine/peripheral/" {
				removable = append(removable, cpuDevice{ID: id, Driver: p.Type, Topology: p.Props})
			}
		}
		if have-len(removable) > n {
			return fmt.Errorf("vm %s: %d vCPUs: only %d of its %d can be unplugged: %w", v.id, n, len(removable), have, errdefs.ErrResourceExhausted)
		}
		var removed []cpuDevice
		for i := len(removable) - 1; have-len(removed) > n; i-- {
			c := removable[i]
			if err := v.unplugCPU(ctx, q, c); err != nil {
				v.undoCPUs(ctx, q, removed, true)
				return err
			}
			removed = append(removed, c)
		}
		v.log.Info("vCPUs unplugged", "from", have, "to", n, "took", time.Since(begin).Round(time.Millisecond))
	}
	return v.saveSize(ctx)
}

func (v *qemuVM) plugCPU(ctx context.Context, q *qmp.Client, c cpuDevice) error {
	if err := q.DeviceAdd(ctx, c.DeviceAddArgs()); err != nil {
		return fmt.Errorf("vm %s: add vCPU %s: %w", v.id, c.ID, err)
	}
	return nil
}

// unplugCPU removes a vCPU: the guest takes it offline and ejects it.
// QEMU 7.2 sends DEVICE_DELETED for its lapic, not for the vCPU, so the
// place of the topology is watched until it is free.
func (v *qemuVM) unplugCPU(ctx context.Context, q *qmp.Client, c cpuDevice) error {
	ctx, cancel := withDefaultTimeout(ctx, unplugTimeout)
	defer cancel()
	w := q.Subscribe(func(ev qmp.Event) bool { return qmp.EjectRefused(ev, c.ID) })
	defer w.Cancel()
	if err := q.Execute(ctx, "device_del", map[string]any{"id": c.ID}, nil); err != nil {
		return fmt.Errorf("vm %s: remove vCPU %s: %w", v.id, c.ID, err)
	}
	for {
		wctx, wcancel := context.WithTimeout(ctx, 20*time.Millisecond)
		ev, err := w.Wait(wctx)
		wcancel()
		if err == nil {
			return fmt.Errorf("vm %s: remove vCPU: %w", v.id, qmp.RefusedErr(ev, c.ID))
		}
		if ctx.Err() != nil {
			return fmt.Errorf("vm %s: remove vCPU %s: waiting for the guest to eject it: %w", v.id, c.ID, ctx.Err())
		}
		places, err := q.QueryHotpluggableCPUs(ctx)
		if err != nil {
			return fmt.Errorf("vm %s: remove vCPU %s: %w", v.id, c.ID, err)
		}
		gone := true
		for _, p := range places {
			if p.QOMPath != "" && topologyKey(p.Props) == topologyKey(c.Topology) {
				gone = false
			}
		}
		if gone {
			return nil
		}
	}
}

// undoHotplug puts back in reverse order what a failed resize removed
// (plug), or removes what it added; what cannot be undone is logged.
func undoHotplug[T any](ctx context.Context, v *qemuVM, what string, items []T, plug bool, plugF, unplugF func(context.Context, T) error) {
	ctx = context.WithoutCancel(ctx)
	for i := len(items) - 1; i >= 0; i-- {
		f := unplugF
		if plug {
			f = plugF
		}
		if err := f(ctx, items[i]); err != nil {
			v.log.Warn("undo "+what+" hotplug", "item", items[i], "plug", plug, "err", err)
		}
	}
}

// undoCPUs puts back vCPUs a failed SetCPUs removed (plug), or removes
// those it added.
func (v *qemuVM) undoCPUs(ctx context.Context, q *qmp.Client, cpus []cpuDevice, plug bool) {
	undoHotplug(ctx, v, "vCPU", cpus, plug,
		func(ctx context.Context, c cpuDevice) error { return v.plugCPU(ctx, q, c) },
		func(ctx context.Context, c cpuDevice) error { return v.unplugCPU(ctx, q, c) })
}

// topologyKey orders places of the topology.
func topologyKey(t map[string]int) int {
	return (t["socket-id"]*hypervisor.MaxVCPUs+t["core-id"])*hypervisor.MaxVCPUs + t["thread-id"]
}

// SetMemory plugs or unplugs memory steps until the VM has mib MiB.
func (v *qemuVM) SetMemory(ctx context.Context, mib uint32) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	q, err := v.running()
	if err != nil {
		return err
	}
	v.mu.Lock()
	fixed, maxMem := v.cfg.FixedMemoryMiB, v.cfg.MaxMemoryMiB
	v.mu.Unlock()
	switch {
	case mib > maxMem:
		return fmt.Errorf("vm %s: %d MiB of memory: more than its max_memory_mib %d: %w", v.id, mib, maxMem, errdefs.ErrResourceExhausted)
	case mib < fixed:
		return fmt.Errorf("vm %s: %d MiB of memory: less than the %d MiB it booted with and cannot unplug: %w", v.id, mib, fixed, errdefs.ErrResourceExhausted)
	case (mib-fixed)%hypervisor.MemoryStepMiB != 0:
		return fmt.Errorf("vm %s: %d MiB of memory: not %d MiB plus whole steps of %d MiB: %w", v.id, mib, fixed, hypervisor.MemoryStepMiB, errdefs.ErrInvalidArgument)
	}
	dimms, err := v.dimms(ctx, q)
	if err != nil {
		return err
	}
	want := int((mib - fixed) / hypervisor.MemoryStepMiB) // at most MaxMemorySteps
	begin := time.Now()
	switch have := len(dimms); {
	case want > have:
		used := map[int]bool{}
		for _, j := range dimms {
			used[j] = true
		}
		var added []int
		for j := 0; len(added) < want-have; j++ {
			if used[j] {
				continue
			}
			if err := v.plugDIMM(ctx, q, j); err != nil {
				v.undoDIMMs(ctx, q, added, false)
				return err
			}
			added = append(added, j)
		}
		v.log.Info("memory hotplugged", "from_mib", fixed+uint32(have)*hypervisor.MemoryStepMiB, "to_mib", mib, "took", time.Since(begin).Round(time.Millisecond))
	case want < have:
		var removed []int
		for i := len(dimms) - 1; i >= want; i-- {
			if err := v.unplugDIMM(ctx, q, dimms[i]); err != nil {
				v.undoDIMMs(ctx, q, removed, true)
				return err
			}
			removed = append(removed, dimms[i])
		}
		v.log.Info("memory unplugged", "from_mib", fixed+uint32(have)*hypervisor.MemoryStepMiB, "to_mib", mib, "took", time.Since(begin).Round(time.Millisecond))
	}
	return v.saveSize(ctx)
}

// dimms lists the indexes of the VM's memory steps (dimmN), in order.
func (v *qemuVM) dimms(ctx context.Context, q *qmp.Client) ([]int, error) {
	devs, err := q.QueryMemoryDevices(ctx)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	var out []int
	for _, d := range devs {
		rest, ok := strings.CutPrefix(d.Data.ID, "dimm")
		j, err := strconv.Atoi(rest)
		if d.Type != "dimm" || !ok || err != nil || d.Data.Size != hypervisor.MemoryStepMiB<<20 {
			continue // not one of ours
		}
		out = append(out, j)
	}
	slices.Sort(out)
	return out, nil
}

func (v *qemuVM) plugDIMM(ctx context.Context, q *qmp.Client, j int) error {
	mem := ramBackend{ID: dimmBackendID(j), SizeMiB: hypervisor.MemoryStepMiB, Shared: hasVirtioFS(&v.cfg)}
	if err := q.ObjectAdd(ctx, mem.ObjectAddArgs()); err != nil {
		return fmt.Errorf("vm %s: add memory %s: %w", v.id, mem.ID, err)
	}
	dimm := dimmDevice{ID: dimmDeviceID(j), Memdev: mem.ID}
	if err := q.DeviceAdd(ctx, dimm.DeviceAddArgs()); err != nil {
		if uerr := q.ObjectDel(context.WithoutCancel(ctx), mem.ID); uerr != nil {
			v.log.Warn("undo object-add", "object", mem.ID, "err", uerr)
		}
		return fmt.Errorf("vm %s: add memory %s: %w", v.id, dimm.ID, err)
	}
	return nil
}

func (v *qemuVM) unplugDIMM(ctx context.Context, q *qmp.Client, j int) error {
	uctx, cancel := withDefaultTimeout(ctx, unplugTimeout)
	defer cancel()
	if err := q.DeviceDel(uctx, dimmDeviceID(j)); err != nil {
		return fmt.Errorf("vm %s: remove memory %s: %w", v.id, dimmDeviceID(j), err)
	}
	if err := q.ObjectDel(uctx, dimmBackendID(j)); err != nil {
		return fmt.Errorf("vm %s: remove memory %s: %w", v.id, dimmBackendID(j), err)
	}
	return nil
}

// undoDIMMs puts back memory steps a failed SetMemory removed (plug), or
// removes those it added.
func (v *qemuVM) undoDIMMs(ctx context.Context, q *qmp.Client, js []int, plug bool) {
	undoHotplug(ctx, v, "memory", js, plug,
		func(ctx context.Context, j int) error { return v.plugDIMM(ctx, q, j) },
		func(ctx context.Context, j int) error { return v.unplugDIMM(ctx, q, j) })
}

// saveSize records the size QEMU reports, for Attach.
func (v *qemuVM) saveSize(ctx context.Context) error {
	size, err := v.Size(ctx)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.cfg.CPUs, v.cfg.MemoryMiB = size.CPUs, size.MemoryMiB
	v.mu.Unlock()
	return v.saveRecordErr()
}

var _ hypervisor.Resizer = (*qemuVM)(nil)
