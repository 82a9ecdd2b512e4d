package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// Devices added before Start join the configuration; after Start they are
// hotplugged into a free PCIe root port (disks: blockdev-add + device_add;
// NICs: getfd + netdev_add + device_add), and removed with device_del
// (which waits for the guest to let go) and blockdev-del / netdev_del.

// AddDisk attaches a block device.
func (v *qemuVM) AddDisk(ctx context.Context, d hypervisor.Disk) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.syncRecord()
	q, cold, err := v.deviceTarget(diskSlotKey(d.ID), "disk "+d.ID)
	if err != nil {
		return err
	}
	if cold {
		v.mu.Lock()
		v.cfg.Disks = append(v.cfg.Disks, d)
		v.mu.Unlock()
		return nil
	}
	if _, err := os.Stat(d.Path); err != nil {
		return fmt.Errorf("vm %s: disk %s: %w (%w)", v.id, d.ID, err, errdefs.ErrNotFound)
	}
	slot, err := v.freeSlot("disk " + d.ID)
	if err != nil {
		return err
	}
	node := blockNode{NodeName: diskNodeName(d.ID), Path: d.Path, Format: d.Format, ReadOnly: d.ReadOnly, Direct: d.Direct, Device: isBlockDevice(d.Path)}
	passed := false // the file went as a descriptor set
	if v.confined() {
		// QEMU's mount namespace holds no host path added later: the
		// disk comes as an open file.
		set, err := v.passDiskFile(ctx, q, d)
		if err != nil {
			return err
		}
		node.Path, passed = fmt.Sprintf("/dev/fdset/%d", set), true
	}
	undo := func() {
		if passed {
			v.dropDiskFile(context.WithoutCancel(ctx), q, d.ID)
		}
	}
	if err := q.BlockdevAdd(ctx, node.BlockdevAddArgs()); err != nil {
		undo()
		return fmt.Errorf("vm %s: add disk %s: %w", v.id, d.ID, err)
	}
	dev := virtioBlk{ID: diskDeviceID(d.ID), Drive: node.NodeName, Bus: rootPortID(slot), Serial: d.Serial}
	if err := q.DeviceAdd(ctx, dev.DeviceAddArgs()); err != nil {
		if uerr := q.BlockdevDel(context.WithoutCancel(ctx), node.NodeName); uerr != nil {
			v.log.Warn("undo blockdev-add", "disk", d.ID, "err", uerr)
		}
		undo()
		return fmt.Errorf("vm %s: add disk %s: %w", v.id, d.ID, err)
	}
	v.mu.Lock()
	v.slots[slot] = diskSlotKey(d.ID)
	v.cfg.Disks = append(v.cfg.Disks, d)
	v.mu.Unlock()
	v.log.Info("disk hotplugged", "disk", d.ID, "path", d.Path, "port", rootPortID(slot))
	return v.saveRecordErr()
}

// RemoveDisk detaches the disk with that id.
func (v *qemuVM) RemoveDisk(ctx context.Context, id string) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.syncRecord()
	q, cold, err := v.removalTarget(diskSlotKey(id), "disk "+id)
	if err != nil {
		return err
	}
	if !cold {
		uctx, cancel := withDefaultTimeout(ctx, unplugTimeout)
		defer cancel()
		if err := q.DeviceDel(uctx, diskDeviceID(id)); err != nil {
			return fmt.Errorf("vm %s: remove disk %s: %w", v.id, id, err)
		}
		if err := q.BlockdevDel(uctx, diskNodeName(id)); err != nil {
			return fmt.Errorf("vm %s: remove disk %s: %w", v.id, id, err)
		}
		if v.confined() {
			v.dropDiskFile(uctx, q, id)
		}
	}
	v.mu.Lock()
	v.freeSlotLocked(diskSlotKey(id))
	v.cfg.Disks = slices.DeleteFunc(v.cfg.Disks, func(d hypervisor.Disk) bool { return d.ID == id })
	v.mu.Unlock()
	if cold {
		return nil
	}
	v.log.Info("disk removed", "disk", id)
	return v.saveRecordErr()
}

// AddNIC attaches a network interface.
func (v *qemuVM) AddNIC(ctx context.Context, n hypervisor.NIC) error {
	if err := n.Validate(); err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.syncRecord()
	q, cold, err := v.deviceTarget(nicSlotKey(n.ID), "nic "+n.ID)
	if err != nil {
		return err
	}
	if cold {
		v.mu.Lock()
		v.cfg.NICs = append(v.cfg.NICs, n)
		v.mu.Unlock()
		return nil
	}
	slot, err := v.freeSlot("nic " + n.ID)
	if err != nil {
		return err
	}
	undo := context.WithoutCancel(ctx)
	var fdNames []string
	for i, f := range n.TapFiles {
		name := fmt.Sprintf("fd-%s-%d", n.ID, i)
		if err := q.GetFD(ctx, name, f); err != nil {
			for _, done := range fdNames {
				q.CloseFD(undo, done)
			}
			return fmt.Errorf("vm %s: add nic %s: %w", v.id, n.ID, err)
		}
		fdNames = append(fdNames, name)
	}
	v.mu.Lock()
	vhost := v.accel == hypervisor.AccelKVM && haveVhostNet()
	v.mu.Unlock()
	netdev := tapNetdev{ID: netdevID(n.ID), IfName: n.TapName, FDs: fdNames, Vhost: vhost}
	if err := q.NetdevAdd(ctx, netdev.NetdevAddArgs()); err != nil {
		for _, name := range fdNames {
			q.CloseFD(undo, name)
		}
		return fmt.Errorf("vm %s: add nic %s: %w", v.id, n.ID, err)
	}
	dev := virtioNet{ID: nicDeviceID(n.ID), Netdev: netdev.ID, MAC: n.MAC.String(), Bus: rootPortID(slot), MTU: n.MTU, Queues: max(1, len(fdNames))}
	if err := q.DeviceAdd(ctx, dev.DeviceAddArgs()); err != nil {
		if uerr := q.NetdevDel(undo, netdev.ID); uerr != nil {
			v.log.Warn("undo netdev_add", "nic", n.ID, "err", uerr)
		}
		return fmt.Errorf("vm %s: add nic %s: %w", v.id, n.ID, err)
	}
	v.mu.Lock()
	v.slots[slot] = nicSlotKey(n.ID)
	v.cfg.NICs = append(v.cfg.NICs, n)
	v.mu.Unlock()
	v.log.Info("nic hotplugged", "nic", n.ID, "mac", n.MAC.String(), "port", rootPortID(slot))
	return v.saveRecordErr()
}

// RemoveNIC detaches the NIC with that id.
func (v *qemuVM) RemoveNIC(ctx context.Context, id string) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.syncRecord()
	q, cold, err := v.removalTarget(nicSlotKey(id), "nic "+id)
	if err != nil {
		return err
	}
	if !cold {
		uctx, cancel := withDefaultTimeout(ctx, unplugTimeout)
		defer cancel()
		if err := q.DeviceDel(uctx, nicDeviceID(id)); err != nil {
			return fmt.Errorf("vm %s: remove nic %s: %w", v.id, id, err)
		}
		if err := q.NetdevDel(uctx, netdevID(id)); err != nil {
			return fmt.Errorf("vm %s: remove nic %s: %w", v.id, id, err)
		}
	}
	v.mu.Lock()
	v.freeSlotLocked(nicSlotKey(id))
	v.cfg.NICs = slices.DeleteFunc(v.cfg.NICs, func(n hypervisor.NIC) bool { return n.ID == id })
	v.mu.Unlock()
	if cold {
		return nil
	}
	v.log.Info("nic removed", "nic", id)
	return v.saveRecordErr()
}

// AddFS shares a directory; before Start only (QEMU cannot hotplug an
// fsdev).
func (v *qemuVM) AddFS(ctx context.Context, fs hypervisor.SharedFS) error {
	if err := fs.Validate(); err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.started {
		return fmt.Errorf("vm %s: share %s: qemu cannot add a shared file system to a running VM: %w", v.id, fs.Tag, errdefs.ErrNotImplemented)
	}
	for _, have := range v.cfg.SharedFS {
		if have.Tag == fs.Tag {
			return fmt.Errorf("vm %s: shared fs %s: %w", v.id, fs.Tag, errdefs.ErrAlreadyExists)
		}
	}
	v.cfg.SharedFS = append(v.cfg.SharedFS, fs)
	return nil
}

// deviceTarget checks that a device may be added: cold (before Start) or
// hot (the QMP client to use).
func (v *qemuVM) deviceTarget(key, what string) (*qmp.Client, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped {
		return nil, false, fmt.Errorf("vm %s: add %s: vm stopped: %w", v.id, what, errdefs.ErrFailedPrecondition)
	}
	if v.hasDeviceLocked(key) {
		return nil, false, fmt.Errorf("vm %s: %s: %w", v.id, what, errdefs.ErrAlreadyExists)
	}
	if !v.started {
		return nil, true, nil
	}
	if v.qmp == nil || v.proc.hasExited() {
		return nil, false, fmt.Errorf("vm %s: add %s: qemu has exited: %w", v.id, what, errdefs.ErrFailedPrecondition)
	}
	return v.qmp, false, nil
}

func (v *qemuVM) removalTarget(key, what string) (*qmp.Client, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.hasDeviceLocked(key) {
		return nil, false, fmt.Errorf("vm %s: %s: %w", v.id, what, errdefs.ErrNotFound)
	}
	if !v.started {
		return nil, true, nil
	}
	if v.stopped || v.qmp == nil || v.proc.hasExited() {
		return nil, false, fmt.Errorf("vm %s: remove %s: qemu has exited: %w", v.id, what, errdefs.ErrFailedPrecondition)
	}
	return v.qmp, false, nil
}

func (v *qemuVM) hasDeviceLocked(key string) bool {
	for _, d := range v.cfg.Disks {
		if diskSlotKey(d.ID) == key {
			return true
		}
	}
	for _, n := range v.cfg.NICs {
		if nicSlotKey(n.ID) == key {
			return true
		}
	}
	return false
}

func (v *qemuVM) freeSlot(what string) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, s := range v.slots {
		if s == "" {
			return i, nil
		}
	}
	return 0, fmt.Errorf("vm %s: add %s: all %d hotplug slots are taken (Config.HotplugSlots): %w", v.id, what, len(v.slots), errdefs.ErrResourceExhausted)
}

func (v *qemuVM) freeSlotLocked(key string) {
	for i, s := range v.slots {
		if s == key {
			v.slots[i] = ""
		}
	}
}

func (v *qemuVM) saveRecordErr() error {
	if err := v.saveRecord(); err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	return nil
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

func isBlockDevice(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0
}

func haveVhostNet() bool {
	return unix.Access("/dev/vhost-net", unix.R_OK|unix.W_OK) == nil
}

// syncRecord takes in what other processes changed through Attach: a
// started VM's record on disk is the truth about which hotplug slots,
// disks and NICs are in use. Callers serialize hotplug across processes
// (pkg/vc holds the sandbox lock).
func (v *qemuVM) syncRecord() {
	b, err := os.ReadFile(v.paths.Record)
	if err != nil {
		return
	}
	var r vmRecord
	if json.Unmarshal(b, &r) != nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.started || len(r.Slots) != len(v.slots) {
		return
	}
	copy(v.slots, r.Slots)
	v.cfg.Disks = r.Disks
	mine := map[string]hypervisor.NIC{}
	for _, n := range v.cfg.NICs {
		mine[n.ID] = n
	}
	v.cfg.NICs = v.cfg.NICs[:0]
	for _, nr := range r.NICs {
		n, ok := mine[nr.ID]
		if !ok {
			mac, _ := net.ParseMAC(nr.MAC)
			n = hypervisor.NIC{ID: nr.ID, TapName: nr.TapName, MAC: mac, MTU: nr.MTU}
		}
		v.cfg.NICs = append(v.cfg.NICs, n)
	}
}

// confined tells whether QEMU runs confined (confine.go).
func (v *qemuVM) confined() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.user != ""
}

// diskFDOpaque tags the descriptor set of a hotplugged disk's file: the
// disk's id and its host path, "disk/ID=PATH" (query-fdsets shows it).
func diskFDOpaque(d hypervisor.Disk) string { return diskFDPrefix(d.ID) + d.Path }

func diskFDPrefix(id string) string { return "disk/" + id + "=" }

// passDiskFile opens a disk's file as the disk is used (read-only or not)
// and hands it to QEMU in a descriptor set of its own, whose id it
// returns. A writable disk gets a read-only descriptor too: QEMU may
// reopen the image read-only.
func (v *qemuVM) passDiskFile(ctx context.Context, q *qmp.Client, d hypervisor.Disk) (int, error) {
	modes := []int{os.O_RDONLY}
	if !d.ReadOnly {
		modes = []int{os.O_RDWR, os.O_RDONLY}
	}
	set := -1
	for _, mode := range modes {
		f, err := os.OpenFile(d.Path, mode|unix.O_CLOEXEC, 0)
		if err != nil {
			if set >= 0 {
				v.dropDiskFile(context.WithoutCancel(ctx), q, d.ID)
			}
			return 0, fmt.Errorf("vm %s: disk %s: %w", v.id, d.ID, err)
		}
		args := map[string]any{"opaque": diskFDOpaque(d)}
		if set >= 0 {
			args["fdset-id"] = set
		}
		id, err := q.AddFDTo(ctx, f, args)
		f.Close()
		if err != nil {
			if set >= 0 {
				v.dropDiskFile(context.WithoutCancel(ctx), q, d.ID)
			}
			return 0, fmt.Errorf("vm %s: disk %s: add-fd: %w", v.id, d.ID, err)
		}
		set = id
	}
	return set, nil
}

// dropDiskFile removes the descriptor set of a disk's file, if any.
func (v *qemuVM) dropDiskFile(ctx context.Context, q *qmp.Client, id string) {
	sets, err := q.FDSets(ctx)
	if err != nil {
		v.log.Warn("query-fdsets", "disk", id, "err", err)
		return
	}
	for opaque, set := range sets {
		if !strings.HasPrefix(opaque, diskFDPrefix(id)) {
			continue
		}
		if err := q.RemoveFDSet(ctx, set); err != nil {
			v.log.Warn("remove-fd", "disk", id, "err", err)
		}
	}
}
