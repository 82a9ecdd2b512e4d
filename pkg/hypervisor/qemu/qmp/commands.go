package qmp

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
)

// Typed wrappers of the QMP commands the driver uses.

// Status is the reply of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "running", "paused", "shutdown", "prelaunch", ...
}

// QueryStatus asks whether the vCPUs run.
func (q *Client) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Stop pauses the vCPUs.
func (q *Client) Stop(ctx context.Context) error { return q.Execute(ctx, "stop", nil, nil) }

// Cont resumes the vCPUs.
func (q *Client) Cont(ctx context.Context) error { return q.Execute(ctx, "cont", nil, nil) }

// SystemPowerdown presses the ACPI power button.
func (q *Client) SystemPowerdown(ctx context.Context) error {
	return q.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit makes QEMU exit (after flushing its block devices). QEMU may close
// the connection before or after its reply: both count as success.
func (q *Client) Quit(ctx context.Context) error {
	err := q.Execute(ctx, "quit", nil, nil)
	if err != nil && q.Err() != nil {
		return nil
	}
	return err
}

// DeviceAdd adds a device; args are device_add's: "driver", "id" and the
// device's properties.
func (q *Client) DeviceAdd(ctx context.Context, args map[string]any) error {
	return q.Execute(ctx, "device_add", args, nil)
}

// DeviceDel asks for a device's removal and waits until the guest let it
// go (DEVICE_DELETED for that id). A guest that reports through ACPI that
// it cannot eject the device (a vCPU or memory it cannot take offline:
// ACPI_DEVICE_OST with a failure status) makes it fail at once, with an
// error wrapping errdefs.ErrFailedPrecondition; QEMU keeps the device.
func (q *Client) DeviceDel(ctx context.Context, id string) error {
	w := q.Subscribe(func(ev Event) bool {
		if ev.Name == "DEVICE_DELETED" {
			var d struct {
				Device string `json:"device"`
			}
			return json.Unmarshal(ev.Data, &d) == nil && d.Device == id
		}
		return EjectRefused(ev, id)
	})
	defer w.Cancel()
	if err := q.Execute(ctx, "device_del", map[string]any{"id": id}, nil); err != nil {
		return err
	}
	ev, err := w.Wait(ctx)
	if err != nil {
		return fmt.Errorf("qmp device_del %s: waiting for DEVICE_DELETED: %w", id, err)
	}
	return RefusedErr(ev, id)
}

// EjectRefused tells whether ev is the guest refusing to eject device id.
func EjectRefused(ev Event, id string) bool {
	if ev.Name != "ACPI_DEVICE_OST" {
		return false
	}
	ost, ok := parseOST(ev.Data)
	return ok && ost.Device == id && ost.ejectFailed()
}

// RefusedErr is the error of a device_del the guest refused (ev as
// EjectRefused matched), nil for any other event.
func RefusedErr(ev Event, id string) error {
	if ev.Name != "ACPI_DEVICE_OST" {
		return nil
	}
	ost, _ := parseOST(ev.Data)
	return fmt.Errorf("qmp device_del %s: the guest refused to eject it (ACPI _OST status %#x): %w", id, ost.Status, errdefs.ErrFailedPrecondition)
}

// acpiOST is the info of an ACPI_DEVICE_OST event: what the guest's ACPI
// said (_OST) about a device's hotplug or eject.
type acpiOST struct {
	Device string `json:"device"`
	Slot   string `json:"slot"`
	Source int    `json:"source"`
	Status int    `json:"status"`
}

// ACPI _OST source and status codes (ACPI 6.x, 6.3.5): Linux answers an
// eject request with "in progress", then with success or a failure
// (0x82, busy, when it cannot take the memory or vCPU offline).
const (
	ostEjectRequest    = 3    // the source: an eject request notification
	ostSuccess         = 0    // success
	ostEjectInProgress = 0x84 // the eject goes on
)

// ejectFailed tells whether the guest answered an eject request with a
// failure.
func (o acpiOST) ejectFailed() bool {
	return o.Source == ostEjectRequest && o.Status != ostSuccess && o.Status != ostEjectInProgress
}

func parseOST(data json.RawMessage) (acpiOST, bool) {
	var d struct {
		Info acpiOST `json:"info"`
	}
	if json.Unmarshal(data, &d) != nil {
		return acpiOST{}, false
	}
	return d.Info, true
}

// NetdevAdd adds a network backend: args has "type" ("tap"), "id" and the
// backend's options.
func (q *Client) NetdevAdd(ctx context.Context, args map[string]any) error {
	return q.Execute(ctx, "netdev_add", args, nil)
}

// NetdevDel removes a network backend.
func (q *Client) NetdevDel(ctx context.Context, id string) error {
	return q.Execute(ctx, "netdev_del", map[string]any{"id": id}, nil)
}

// BlockdevAdd adds a block node graph (a BlockdevOptions object).
func (q *Client) BlockdevAdd(ctx context.Context, args map[string]any) error {
	return q.Execute(ctx, "blockdev-add", args, nil)
}

// BlockdevDel removes a block node by node name.
func (q *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return q.Execute(ctx, "blockdev-del", map[string]any{"node-name": nodeName}, nil)
}

// ObjectAdd adds a QOM object ("qom-type", "id" and its properties).
func (q *Client) ObjectAdd(ctx context.Context, args map[string]any) error {
	return q.Execute(ctx, "object-add", args, nil)
}

// ObjectDel removes a QOM object.
func (q *Client) ObjectDel(ctx context.Context, id string) error {
	return q.Execute(ctx, "object-del", map[string]any{"id": id}, nil)
}

// GetFD passes an open file to QEMU under a name, for commands that take
// fd=NAME (netdev_add tap).
func (q *Client) GetFD(ctx context.Context, name string, f *os.File) error {
	return q.execute(ctx, "getfd", map[string]any{"fdname": name}, nil, []*os.File{f})
}

// CloseFD drops a file passed with GetFD and not consumed.
func (q *Client) CloseFD(ctx context.Context, name string) error {
	return q.Execute(ctx, "closefd", map[string]any{"fdname": name}, nil)
}

// CPU is one entry of query-cpus-fast.
type CPU struct {
	Index    int    `json:"cpu-index"`
	QOMPath  string `json:"qom-path"`
	ThreadID int    `json:"thread-id"`
	Target   string `json:"target"`
}

// QueryCPUsFast lists the vCPUs and their host threads.
func (q *Client) QueryCPUsFast(ctx context.Context) ([]CPU, error) {
	var cpus []CPU
	err := q.Execute(ctx, "query-cpus-fast", nil, &cpus)
	return cpus, err
}

// PCIDevice is a device of query-pci, bridges flattened.
type PCIDevice struct {
	Bus      int    `json:"bus"`
	Slot     int    `json:"slot"`
	Function int    `json:"function"`
	QDevID   string `json:"qdev_id"`
	Bridge   *struct {
		Devices []PCIDevice `json:"devices"`
	} `json:"pci_bridge,omitempty"`
}

// QueryPCI lists the PCI devices, those behind bridges included, with
// their qdev ids.
func (q *Client) QueryPCI(ctx context.Context) ([]PCIDevice, error) {
	var buses []struct {
		Devices []PCIDevice `json:"devices"`
	}
	if err := q.Execute(ctx, "query-pci", nil, &buses); err != nil {
		return nil, err
	}
	var out []PCIDevice
	var walk func([]PCIDevice)
	walk = func(ds []PCIDevice) {
		for _, d := range ds {
			out = append(out, d)
			if d.Bridge != nil {
				walk(d.Bridge.Devices)
			}
		}
	}
	for _, b := range buses {
		walk(b.Devices)
	}
	return out, nil
}

// HotpluggableCPU is an entry of query-hotpluggable-cpus: a place of
// the topology, with the vCPU in it (QOMPath) or free.
type HotpluggableCPU struct {
	Type    string         `json:"type"`
	Props   map[string]int `json:"props"`
	QOMPath string         `json:"qom-path,omitempty"`
}

// QueryHotpluggableCPUs lists the places of the topology.
func (q *Client) QueryHotpluggableCPUs(ctx context.Context) ([]HotpluggableCPU, error) {
	var cpus []HotpluggableCPU
	err := q.Execute(ctx, "query-hotpluggable-cpus", nil, &cpus)
	return cpus, err
}

// MemoryDevice is an entry of query-memory-devices (pc-dimm and the
// like).
type MemoryDevice struct {
	Type string `json:"type"`
	Data struct {
		ID     string `json:"id"`
		Size   int64  `json:"size"`
		Memdev string `json:"memdev"`
	} `json:"data"`
}

// QueryMemoryDevices lists the memory devices.
func (q *Client) QueryMemoryDevices(ctx context.Context) ([]MemoryDevice, error) {
	var devs []MemoryDevice
	err := q.Execute(ctx, "query-memory-devices", nil, &devs)
	return devs, err
}

// MigrationStatus is the part of query-migrate's reply the driver
// reads.
type MigrationStatus struct {
	Status    string `json:"status"` // none, setup, active, completed, failed, cancelled, ...
	ErrorDesc string `json:"error-desc"`
}

// QueryMigrate asks how the (outgoing or incoming) migration is going.
func (q *Client) QueryMigrate(ctx context.Context) (MigrationStatus, error) {
	var s MigrationStatus
	err := q.Execute(ctx, "query-migrate", nil, &s)
	return s, err
}

// SetMigrationCapability turns one migration capability on or off.
func (q *Client) SetMigrationCapability(ctx context.Context, name string, on bool) error {
	return q.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": name, "state": on}},
	}, nil)
}

// AddFD passes an open file to QEMU into a new file descriptor set,
// tagged opaque, and returns the set's id: commands that open a path
// open /dev/fdset/ID instead (a QEMU that cannot see the file's path).
func (q *Client) AddFD(ctx context.Context, f *os.File, opaque string) (int, error) {
	return q.AddFDTo(ctx, f, map[string]any{"opaque": opaque})
}

// AddFDTo is add-fd with its arguments ("fdset-id" adds to a set).
func (q *Client) AddFDTo(ctx context.Context, f *os.File, args map[string]any) (int, error) {
	var r struct {
		FDSetID int `json:"fdset-id"`
	}
	if err := q.execute(ctx, "add-fd", args, &r, []*os.File{f}); err != nil {
		return 0, err
	}
	return r.FDSetID, nil
}

// RemoveFDSet removes a descriptor set: QEMU closes its descriptors once
// nothing uses them.
func (q *Client) RemoveFDSet(ctx context.Context, id int) error {
	return q.Execute(ctx, "remove-fd", map[string]any{"fdset-id": id}, nil)
}

// FDSets maps the opaque tag of each descriptor set (query-fdsets) to the
// set's id; sets without a tag are left out.
func (q *Client) FDSets(ctx context.Context) (map[string]int, error) {
	var sets []struct {
		FDSetID int `json:"fdset-id"`
		FDs     []struct {
			Opaque string `json:"opaque"`
		} `json:"fds"`
	}
	if err := q.Execute(ctx, "query-fdsets", nil, &sets); err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, s := range sets {
		for _, fd := range s.FDs {
			if fd.Opaque != "" {
				m[fd.Opaque] = s.FDSetID
			}
		}
	}
	return m, nil
}
