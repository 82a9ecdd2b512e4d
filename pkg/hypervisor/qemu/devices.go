package qemu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// device is a piece of the VM that renders its own QEMU command line
// arguments ("-device", "virtio-rng-pci,id=rng0", ...).
type device interface {
	QemuParams() []string
}

// hotplugDevice is a device that can also be added to a running VM: it
// renders the arguments of device_add.
type hotplugDevice interface {
	device
	DeviceAddArgs() map[string]any
}

// prop is one key=value of a QEMU option. Values are strings, ints or
// bools; keys may be dotted ("file.filename") for nested options.
type prop struct {
	key string
	val any
}

// props is an ordered option list, rendered as a command line option
// string or as a QMP argument object.
type props []prop

func (p props) add(key string, val any) props { return append(p, prop{key, val}) }

// addIf adds key=val when val is not the zero value.
func (p props) addIf(key string, val any) props {
	switch v := val.(type) {
	case string:
		if v == "" {
			return p
		}
	case int:
		if v == 0 {
			return p
		}
	case bool:
		if !v {
			return p
		}
	}
	return p.add(key, val)
}

// escape doubles the commas QEMU's option parser would split on.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// cli renders "first,k=v,k=v": first is the driver or backend type, or
// empty when the first pair is key=value already.
func (p props) cli(first string) string {
	var b strings.Builder
	b.WriteString(escape(first))
	for _, kv := range p {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv.key)
		b.WriteByte('=')
		switch v := kv.val.(type) {
		case string:
			b.WriteString(escape(v))
		case int:
			b.WriteString(strconv.Itoa(v))
		case uint32:
			b.WriteString(strconv.FormatUint(uint64(v), 10))
		case bool:
			if v {
				b.WriteString("on")
			} else {
				b.WriteString("off")
			}
		default:
			panic(fmt.Sprintf("qemu: option %s has a value of type %T", kv.key, kv.val))
		}
	}
	return b.String()
}

// qmp renders the options as a QMP argument object, dotted keys as nested
// objects.
func (p props) qmp() map[string]any {
	out := map[string]any{}
	for _, kv := range p {
		m := out
		parts := strings.Split(kv.key, ".")
		for _, k := range parts[:len(parts)-1] {
			sub, ok := m[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[k] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = kv.val
	}
	return out
}

// rootPort is a PCIe root port on q35's root complex: the slot a device is
// hotplugged into (q35's pcie.0 itself does not take hotplug).
type rootPort struct {
	ID      string
	Chassis int
	Slot    int
}

func (d rootPort) props() props {
	// No I/O window: virtio devices behind it are modern-only and need
	// none, and the 64 KiB I/O space would run out after a dozen ports.
	return props{}.add("id", d.ID).add("bus", "pcie.0").add("chassis", d.Chassis).add("slot", d.Slot).add("io-reserve", "0")
}

func (d rootPort) QemuParams() []string {
	return []string{"-device", d.props().cli("pcie-root-port")}
}

// consoleSerial is the guest's first serial port (ttyS0) written to a file.
type consoleSerial struct {
	ID   string
	Path string
}

func (d consoleSerial) QemuParams() []string {
	return []string{
		"-chardev", props{}.add("id", d.ID).add("path", d.Path).cli("file"),
		"-serial", "chardev:" + d.ID,
	}
}

// socketChardev is a unix socket QEMU listens on.
type socketChardev struct {
	ID   string
	Path string
}

func (d socketChardev) QemuParams() []string {
	return []string{"-chardev", props{}.add("id", d.ID).add("path", d.Path).add("server", true).add("wait", false).cli("socket")}
}

// virtioSerial is a virtio-serial controller; its ports are
// VirtioSerialPorts on bus ID+".0".
type virtioSerial struct {
	ID string
}

func (d virtioSerial) QemuParams() []string {
	return []string{"-device", props{}.add("id", d.ID).cli("virtio-serial-pci")}
}

// virtioSerialPort is a named port bridged to a chardev. The guest sees
// /sys/class/virtio-ports/vportNpM/name = Name.
type virtioSerialPort struct {
	ID      string
	Bus     string // the controller's ID + ".0"
	Chardev string
	Name    string
}

func (d virtioSerialPort) QemuParams() []string {
	return []string{"-device", props{}.add("id", d.ID).add("bus", d.Bus).add("chardev", d.Chardev).add("name", d.Name).cli("virtserialport")}
}

// vhostVsockPCI is a vhost-vsock device with the guest's context id. VhostFD,
// when not negative, is an already opened /dev/vhost-vsock whose CID has
// been set (the way to hold a CID without racing another VM for it).
type vhostVsockPCI struct {
	ID      string
	CID     uint32
	VhostFD int
}

func (d vhostVsockPCI) QemuParams() []string {
	p := props{}.add("id", d.ID).add("guest-cid", d.CID)
	if d.VhostFD >= 0 {
		p = p.add("vhostfd", strconv.Itoa(d.VhostFD))
	}
	return []string{"-device", p.cli("vhost-vsock-pci")}
}

// virtioRNG feeds the guest's entropy pool from the host.
type virtioRNG struct {
	ID string
}

func (d virtioRNG) QemuParams() []string {
	return []string{"-device", props{}.add("id", d.ID).cli("virtio-rng-pci")}
}

// virtioBalloon is a memory balloon the host never inflates: it is there
// for free page reporting, by which the guest tells QEMU which blocks of
// its free memory (2 MiB and up, some seconds after they were freed) it
// may take back, and QEMU discards them from the VM's RSS. A guest that
// touches such a block again gets fresh zeroed pages.
type virtioBalloon struct {
	ID                string
	FreePageReporting bool
}

func (d virtioBalloon) props() props {
	return props{}.add("id", d.ID).add("free-page-reporting", d.FreePageReporting)
}

func (d virtioBalloon) QemuParams() []string {
	return []string{"-device", d.props().cli("virtio-balloon-pci")}
}

func (d virtioBalloon) DeviceAddArgs() map[string]any {
	return props{}.add("driver", "virtio-balloon-pci").qmpMerge(d.props())
}

// virtio9P shares a host directory over 9p (an fsdev and its device).
type virtio9P struct {
	ID       string // the device; the fsdev is ID+"-fs"
	Path     string
	Tag      string
	ReadOnly bool
}

func (d virtio9P) QemuParams() []string {
	// security_model=none: files keep the host's owners; the guest's
	// root acts as the host user QEMU runs as.
	fs := props{}.add("id", d.ID+"-fs").add("path", d.Path).add("security_model", "none")
	if d.ReadOnly {
		fs = fs.add("readonly", true)
	}
	return []string{
		"-fsdev", fs.cli("local"),
		"-device", props{}.add("id", d.ID).add("fsdev", d.ID+"-fs").add("mount_tag", d.Tag).cli("virtio-9p-pci"),
	}
}

// blockNode is a -blockdev graph: a protocol node (file or host_device)
// under a format node (raw or qcow2) named NodeName.
type blockNode struct {
	NodeName string
	Path     string
	Format   string // raw or qcow2
	ReadOnly bool
	Direct   bool // O_DIRECT
	Device   bool // a host block device rather than a file
}

func (d blockNode) props() props {
	proto := "file"
	if d.Device {
		proto = "host_device"
	}
	p := props{}.add("driver", d.Format).add("node-name", d.NodeName).add("read-only", d.ReadOnly).
		add("file.driver", proto).add("file.filename", d.Path).add("file.read-only", d.ReadOnly)
	if d.Direct {
		p = p.add("file.cache.direct", true).add("file.aio", "native")
	}
	return p
}

func (d blockNode) QemuParams() []string { return []string{"-blockdev", d.props().cli("")} }

// BlockdevAddArgs renders the same graph for QMP blockdev-add.
func (d blockNode) BlockdevAddArgs() map[string]any { return d.props().qmp() }

// virtioBlk is a virtio-blk disk over a block node.
type virtioBlk struct {
	ID     string
	Drive  string // the blockNode's NodeName
	Bus    string // a root port, or "" for pcie.0
	Serial string
}

func (d virtioBlk) props() props {
	return props{}.add("id", d.ID).add("drive", d.Drive).addIf("bus", d.Bus).addIf("serial", d.Serial)
}

func (d virtioBlk) QemuParams() []string { return []string{"-device", d.props().cli("virtio-blk-pci")} }

func (d virtioBlk) DeviceAddArgs() map[string]any {
	return props{}.add("driver", "virtio-blk-pci").qmpMerge(d.props())
}

// tapNetdev is a tap network backend: opened by QEMU by name, or given as
// open descriptors (FDs: numbers on the command line, names passed with
// getfd for hotplug).
type tapNetdev struct {
	ID     string
	IfName string
	FDs    []string
	Vhost  bool
}

func (d tapNetdev) props() props {
	p := props{}.add("id", d.ID)
	switch {
	case len(d.FDs) == 1:
		p = p.add("fd", d.FDs[0])
	case len(d.FDs) > 1:
		p = p.add("fds", strings.Join(d.FDs, ":"))
	default:
		p = p.add("ifname", d.IfName).add("script", "no").add("downscript", "no")
	}
	return p.add("vhost", d.Vhost)
}

func (d tapNetdev) QemuParams() []string { return []string{"-netdev", d.props().cli("tap")} }

// NetdevAddArgs renders the backend for QMP netdev_add.
func (d tapNetdev) NetdevAddArgs() map[string]any {
	return props{}.add("type", "tap").qmpMerge(d.props())
}

// streamNetdev is a network backend that exchanges the guest's frames
// with a user-mode network stack (passt) over a unix stream socket that
// the stack listens on.
type streamNetdev struct {
	ID   string
	Path string
}

func (d streamNetdev) props() props {
	return props{}.add("id", d.ID).add("server", false).add("addr.type", "unix").add("addr.path", d.Path)
}

func (d streamNetdev) QemuParams() []string { return []string{"-netdev", d.props().cli("stream")} }

// virtioNet is a virtio-net NIC over a netdev.
type virtioNet struct {
	ID     string
	Netdev string
	MAC    string
	Bus    string // a root port, or "" for pcie.0
	MTU    int    // host_mtu advertised to the guest, 0 for none
	Queues int    // >1 turns multiqueue on
}

func (d virtioNet) props() props {
	p := props{}.add("id", d.ID).add("netdev", d.Netdev).add("mac", d.MAC).addIf("bus", d.Bus).addIf("host_mtu", d.MTU)
	if d.Queues > 1 {
		p = p.add("mq", true).add("vectors", 2*d.Queues+2)
	}
	return p
}

func (d virtioNet) QemuParams() []string { return []string{"-device", d.props().cli("virtio-net-pci")} }

func (d virtioNet) DeviceAddArgs() map[string]any {
	return props{}.add("driver", "virtio-net-pci").qmpMerge(d.props())
}

func (p props) qmpMerge(more props) map[string]any {
	return append(append(props{}, p...), more...).qmp()
}

// cpuDevice is a vCPU plugged as a device, beyond -smp's boot vCPUs, so that it
// can be unplugged: at a place of the topology (socket-id, core-id,
// thread-id, ... as query-hotpluggable-cpus reports them), of the type
// QEMU reports for the -cpu model.
type cpuDevice struct {
	ID       string
	Driver   string
	Topology map[string]int
}

func (d cpuDevice) props() props {
	p := props{}.add("id", d.ID)
	keys := make([]string, 0, len(d.Topology))
	for k := range d.Topology {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p = p.add(k, d.Topology[k])
	}
	return p
}

func (d cpuDevice) QemuParams() []string { return []string{"-device", d.props().cli(d.Driver)} }

func (d cpuDevice) DeviceAddArgs() map[string]any {
	return props{}.add("driver", d.Driver).qmpMerge(d.props())
}

// ramBackend is anonymous guest memory (a memory-backend-ram object) that
// a DIMM maps; Shared makes it a shared memfd's, which a vhost-user
// device's daemon (virtiofsd) can map too.
type ramBackend struct {
	ID      string
	SizeMiB int
	Shared  bool
}

func (d ramBackend) qomType() string {
	if d.Shared {
		return "memory-backend-memfd"
	}
	return "memory-backend-ram"
}

func (d ramBackend) props() props {
	p := props{}.add("id", d.ID).add("size", d.SizeMiB<<20)
	if d.Shared {
		p = p.add("share", true)
	}
	return p
}

func (d ramBackend) QemuParams() []string {
	return []string{"-object", d.props().cli(d.qomType())}
}

// ObjectAddArgs renders the backend for QMP object-add.
func (d ramBackend) ObjectAddArgs() map[string]any {
	return props{}.add("qom-type", d.qomType()).qmpMerge(d.props())
}

// dimmDevice is a pc-dimm over a ramBackend: memory the guest finds through
// ACPI, and gives back when it is ejected.
type dimmDevice struct {
	ID     string
	Memdev string
}

func (d dimmDevice) props() props { return props{}.add("id", d.ID).add("memdev", d.Memdev) }

func (d dimmDevice) QemuParams() []string { return []string{"-device", d.props().cli("pc-dimm")} }

func (d dimmDevice) DeviceAddArgs() map[string]any {
	return props{}.add("driver", "pc-dimm").qmpMerge(d.props())
}
