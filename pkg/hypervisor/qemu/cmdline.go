package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// defaultKernelParams come before Config.KernelParams: the console on the
// first serial port (which the driver writes to ConsoleLog), little noise,
// and a panic that ends the VM (with -no-reboot, a reboot is an exit).
// no_timer_check: the IO-APIC timer check panics a guest whose vCPU is
// starved (TCG on a loaded host: "IO-APIC + timer doesn't work!"). The
// rest skip work a VM does not need: TSC calibration, crypto self-tests,
// probing a PS/2 keyboard controller, SMP alternatives patching.
const defaultKernelParams = "console=ttyS0 quiet panic=1 no_timer_check tsc=reliable cryptomgr.notests i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd noreplace-smp"

// Files in a VM's state directory.
const (
	qmpSocketName   = "qmp.sock"
	attachQMPName   = "qmp-attach.sock"
	agentSocketName = "agent.sock"
	dataSocketName  = "data.sock"
	consoleLogName  = "console.log"
	qemuLogName     = "qemu.log"
	pidFileName     = "qemu.pid"
	recordName      = "qemu-vm.json"
)

// maxSocketPath is the room in sockaddr_un.sun_path, less the NUL.
const maxSocketPath = 107

type statePaths struct {
	// QMP is the starter's monitor; AttachQMP a second one for Attach,
	// since a QMP socket serves one client at a time.
	QMP, AttachQMP, Agent, Console, Log, Pid, Record string
	// Data is the stdio data port's socket (hypervisor.DataPortName).
	Data string
	// Passt is the NAT NIC's network stack's socket (passt.go).
	Passt string
}

func pathsFor(dir string) statePaths {
	return statePaths{
		QMP:       filepath.Join(dir, qmpSocketName),
		AttachQMP: filepath.Join(dir, attachQMPName),
		Agent:     filepath.Join(dir, agentSocketName),
		Data:      filepath.Join(dir, dataSocketName),
		Console:   filepath.Join(dir, consoleLogName),
		Log:       filepath.Join(dir, qemuLogName),
		Pid:       filepath.Join(dir, pidFileName),
		Record:    filepath.Join(dir, recordName),
		Passt:     filepath.Join(dir, passtSocketName),
	}
}

// launchPlan is everything the command line depends on, resolved.
type launchPlan struct {
	cfg       hypervisor.Config // validated; devices added before Start included
	paths     statePaths
	accel     string // kvm or tcg
	transport string // vsock or virtio-serial
	cid       uint32
	vhostFD   int              // /dev/vhost-vsock in the child, -1 for none
	tapFDs    map[string][]int // NIC id -> descriptor numbers in the child
	vhostNet  bool
	slots     []string     // root port i -> the cold-plugged device in it, "" free
	conf      *confinement // nil: QEMU runs as its caller
}

// user is the user QEMU runs as when confined, "" otherwise.
func (p *launchPlan) user() string {
	if p.conf == nil {
		return ""
	}
	return p.conf.user
}

// QEMU ids of the driver's objects. The caller's ids are prefixed by kind,
// so a disk and a NIC may share one, none collides with the fixed devices,
// and QEMU's rule that ids start with a letter holds.
func rootPortID(i int) string       { return "rp" + strconv.Itoa(i) }
func diskDeviceID(id string) string { return "blk-" + id }
func diskNodeName(id string) string { return "drive-" + id }
func nicDeviceID(id string) string  { return "net-" + id }
func netdevID(id string) string     { return "netdev-" + id }
func fsDeviceID(tag string) string  { return "fs-" + tag }

func dimmDeviceID(j int) string  { return "dimm" + strconv.Itoa(j) }
func dimmBackendID(j int) string { return "mem-dimm" + strconv.Itoa(j) }

// cpuDeviceID names the vCPU device at a place of the topology.
func cpuDeviceID(t map[string]int) string {
	return fmt.Sprintf("cpu-%d-%d-%d", t["socket-id"], t["core-id"], t["thread-id"])
}

// bootTopology is the place of vCPU i in the topology the command line
// sets (one socket, a core per vCPU).
func bootTopology(i int) map[string]int {
	return map[string]int{"socket-id": 0, "core-id": i, "thread-id": 0}
}

// cpuDriver is the device type of a vCPU of the -cpu model used under
// accel (as query-hotpluggable-cpus reports it).
func cpuDriver(accel string) string {
	if accel == hypervisor.AccelKVM {
		return "host-x86_64-cpu"
	}
	return "max-x86_64-cpu"
}

// memorySlots is the number of DIMM slots: one per memory step of room.
func memorySlots(c *hypervisor.Config) int {
	return int((c.MaxMemoryMiB - c.FixedMemoryMiB) / hypervisor.MemoryStepMiB)
}

// memoryBackendID is the id of the guest RAM's memory backend object (a
// file's with a memory file, a memfd's with virtio-fs).
const memoryBackendID = "pc.ram"

// slot occupant keys
func diskSlotKey(id string) string { return "disk/" + id }
func nicSlotKey(id string) string  { return "nic/" + id }

// rootPorts returns the root ports for the plan's slots.
func (p *launchPlan) rootPorts() []rootPort {
	ports := make([]rootPort, len(p.slots))
	for i := range ports {
		ports[i] = rootPort{ID: rootPortID(i), Chassis: 1, Slot: i + 1}
	}
	return ports
}

// devices lists the VM's devices in command line order.
func (p *launchPlan) devices() []device {
	c := &p.cfg
	devs := []device{
		consoleSerial{ID: "console", Path: p.paths.Console},
		virtioRNG{ID: "rng0"},
	}
	if balloonOn(c) {
		devs = append(devs, virtioBalloon{ID: "balloon0", FreePageReporting: true})
	}
	switch p.transport {
	case hypervisor.TransportVsock:
		devs = append(devs, vhostVsockPCI{ID: "vsock0", CID: p.cid, VhostFD: p.vhostFD})
	default:
		devs = append(devs,
			socketChardev{ID: "agent", Path: p.paths.Agent},
			virtioSerial{ID: "serial0"},
			virtioSerialPort{ID: "agent0", Bus: "serial0.0", Chardev: "agent", Name: hypervisor.AgentPortName},
			socketChardev{ID: "data", Path: p.paths.Data},
			virtioSerialPort{ID: "data0", Bus: "serial0.0", Chardev: "data", Name: hypervisor.DataPortName},
		)
	}
	for _, fs := range c.SharedFS {
		if fs.Kind == hypervisor.FSVirtioFS {
			devs = append(devs, vhostUserFS{ID: fsDeviceID(fs.Tag), Sock: virtiofsSocket(c.StateDir, fs.Tag), Tag: fs.Tag})
			continue
		}
		devs = append(devs, virtio9P{ID: fsDeviceID(fs.Tag), Path: fs.HostPath, Tag: fs.Tag, ReadOnly: fs.ReadOnly})
	}
	for _, rp := range p.rootPorts() {
		devs = append(devs, rp)
	}
	slotOf := map[string]string{}
	for i, id := range p.slots {
		if id != "" {
			slotOf[id] = rootPortID(i)
		}
	}
	for _, d := range c.Disks {
		devs = append(devs,
			blockNode{NodeName: diskNodeName(d.ID), Path: d.Path, Format: d.Format, ReadOnly: d.ReadOnly, Direct: d.Direct, Device: isBlockDevice(d.Path)},
			virtioBlk{ID: diskDeviceID(d.ID), Drive: diskNodeName(d.ID), Bus: slotOf[diskSlotKey(d.ID)], Serial: d.Serial},
		)
	}
	for _, n := range c.NICs {
		var fds []string
		for _, fd := range p.tapFDs[n.ID] {
			fds = append(fds, strconv.Itoa(fd))
		}
		devs = append(devs,
			tapNetdev{ID: netdevID(n.ID), IfName: n.TapName, FDs: fds, Vhost: p.vhostNet},
			virtioNet{ID: nicDeviceID(n.ID), Netdev: netdevID(n.ID), MAC: n.MAC.String(), Bus: slotOf[nicSlotKey(n.ID)], MTU: n.MTU, Queues: max(1, len(fds))},
		)
	}
	for i := int(c.FixedCPUs); i < int(c.CPUs); i++ {
		devs = append(devs, cpuDevice{ID: cpuDeviceID(bootTopology(i)), Driver: cpuDriver(p.accel), Topology: bootTopology(i)})
	}
	for j := 0; j < int((c.MemoryMiB-c.FixedMemoryMiB)/hypervisor.MemoryStepMiB); j++ {
		devs = append(devs, ramBackend{ID: dimmBackendID(j), SizeMiB: hypervisor.MemoryStepMiB, Shared: hasVirtioFS(c)}, dimmDevice{ID: dimmDeviceID(j), Memdev: dimmBackendID(j)})
	}
	if n := c.NAT; n != nil {
		// The stack is passt (passt.go), which forwards the published
		// ports itself. On pcie.0: a NAT NIC is never unplugged, so it
		// takes no root port.
		devs = append(devs,
			streamNetdev{ID: netdevID(n.ID), Path: p.paths.Passt},
			virtioNet{ID: nicDeviceID(n.ID), Netdev: netdevID(n.ID), MAC: n.MAC.String()},
		)
	}
	return devs
}

// balloonOn says whether the VM gets the balloon (its free page
// reporting). Not with a MemoryFile: QEMU 7.2 discards a reported block
// of a file-backed RAM by punching it out of the file even when the file
// is mapped private, and the VMs restored from one template all map its
// file: one guest's free page would read as zeros in the others (QEMU 8.2
// fixed that; see docs/performance.md). A template and the VMs restored
// from it have the same devices, so neither has it.
func balloonOn(c *hypervisor.Config) bool {
	return !c.NoBalloon && c.MemoryFile == ""
}

// sandboxOpts is QEMU's seccomp filter: no obsolete system calls, no
// setuid and the like, no scheduler or priority changes, and no new
// programs (a template's migrations go through a passed descriptor:
// template.go).
const sandboxOpts = "on,obsolete=deny,elevateprivileges=deny,resourcecontrol=deny,spawn=deny"

// commandLine renders the plan as QEMU's arguments (without argv[0]).
func (p *launchPlan) commandLine() []string {
	c := &p.cfg
	args := []string{
		"-name", escape(c.ID) + ",debug-threads=on",
		// No default devices, no config files, no display, no reboot: a
		// guest reboot ends the VM.
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		// q35 without the devices a container VM never uses.
		"-machine", "q35,sata=off,smbus=off,vmport=off,usb=off,graphics=off",
	}
	if c.MemoryFile != "" || hasVirtioFS(c) {
		// The RAM block keeps QEMU's default id, pc.ram, so that a
		// template's state and its restore name the same block.
		args[len(args)-1] += ",memory-backend=" + memoryBackendID
	}
	args = append(args, "-sandbox", sandboxOpts)
	if p.accel == hypervisor.AccelKVM {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg,thread=multi", "-cpu", "max")
	}
	// The vCPUs beyond FixedCPUs and the memory beyond FixedMemoryMiB
	// are devices (devices()), as hotplugged ones are. One socket of
	// MaxCPUs cores: vCPU i is core i.
	smp := fmt.Sprint(c.FixedCPUs)
	if c.MaxCPUs > c.FixedCPUs {
		smp += fmt.Sprintf(",maxcpus=%d,sockets=1,cores=%d,threads=1", c.MaxCPUs, c.MaxCPUs)
	}
	mem := fmt.Sprintf("%dM", c.FixedMemoryMiB)
	if c.MaxMemoryMiB > c.FixedMemoryMiB {
		mem += fmt.Sprintf(",slots=%d,maxmem=%dM", memorySlots(c), c.MaxMemoryMiB)
	}
	args = append(args, "-smp", smp, "-m", mem)
	if c.MemoryFile != "" {
		share := "off"
		if c.MemoryShared {
			share = "on"
		}
		args = append(args, "-object", "memory-backend-file,id="+memoryBackendID+
			",size="+fmt.Sprint(c.FixedMemoryMiB)+"M,mem-path="+escape(c.MemoryFile)+",share="+share)
	} else if hasVirtioFS(c) {
		// virtiofsd maps the guest's RAM: it must be shared memory.
		args = append(args, "-object", "memory-backend-memfd,id="+memoryBackendID+
			",size="+fmt.Sprint(c.FixedMemoryMiB)+"M,share=on")
	}
	if c.Firmware != "" {
		args = append(args, "-bios", c.Firmware)
	}
	args = append(args, "-kernel", c.Kernel)
	if c.Initrd != "" {
		args = append(args, "-initrd", c.Initrd)
	}
	args = append(args, "-append", kernelCmdline(c.KernelParams))
	if p.conf == nil {
		// A confined QEMU is PID 1 of its own namespace: the driver
		// writes its pid (confine.go).
		args = append(args, "-pidfile", p.paths.Pid)
	}
	args = append(args,
		"-qmp", "unix:"+escape(p.paths.QMP)+",server=on,wait=off",
		"-qmp", "unix:"+escape(p.paths.AttachQMP)+",server=on,wait=off",
	)
	for _, d := range p.devices() {
		args = append(args, d.QemuParams()...)
	}
	if c.RestoreState != "" {
		// Wait for migrate-incoming (restore.go), and stay paused once
		// the state is in, until the driver says cont.
		args = append(args, "-incoming", "defer", "-S")
	}
	return args
}

// kernelCmdline puts the defaults before the caller's parameters.
func kernelCmdline(extra string) string {
	extra = strings.TrimSpace(extra)
	if extra == "" {
		return defaultKernelParams
	}
	return defaultKernelParams + " " + extra
}
