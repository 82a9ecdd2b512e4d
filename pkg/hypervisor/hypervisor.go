// Package hypervisor is the contract between the sandbox code and the
// virtual machine monitors that run a sandbox: one Hypervisor value is one
// VM. The package holds the interface, the backend-neutral configuration and
// device descriptions, and a registry of backends, so that a new backend
// (Cloud Hypervisor, Firecracker) plugs in without the sandbox code knowing
// its name at compile time. Backends live in sub-packages (qemu).
package hypervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
)

// Hypervisor is one virtual machine: what every driver does (the core,
// eight methods, as nerdbox's vm.Instance has seven). What only some
// drivers do are optional interfaces a VM implements or not, found by
// type assertion: Detacher, Pauser, Unplugger, StateReporter, Resizer,
// Templater. The helpers Detach, Pause, Resume, RemoveNIC, RemoveDisk and
// VMState call them, and (but Detach, which has nothing to do) fail with
// an error wrapping errdefs.ErrNotImplemented, naming the capability, on
// a VM without.
//
// Devices given in the Config, and those added with AddNIC, AddDisk and
// AddFS before Start, are present at boot. After Start, adding devices
// is hotplug, possible only where Capabilities says so; otherwise the
// methods return an error wrapping errdefs.ErrNotImplemented.
//
// All methods are safe for concurrent use.
type Hypervisor interface {
	// Start launches the VM and returns once the hypervisor is running and
	// its control channel answers; the guest may still be booting. When
	// the VM dies while starting, the error carries the tail of the
	// console log and of the hypervisor's own log. A failed Start leaves
	// no process behind.
	Start(ctx context.Context) error

	// Stop shuts the VM down: it asks the guest to power off (ACPI power
	// button), waits up to grace for the VM to exit, then tells the
	// hypervisor to quit, and kills it if it is still there. It returns
	// once the process is gone and the sockets in the state directory are
	// removed. Cancelling ctx skips to the kill. Stopping a VM that
	// already exited only cleans up.
	Stop(ctx context.Context, grace time.Duration) error

	// AddNIC attaches a network interface. The guest finds a NIC by its
	// MAC address.
	AddNIC(ctx context.Context, nic NIC) error

	// AddDisk attaches a block device. The guest finds a disk by its
	// serial (Disk.Serial, which defaults to the id).
	AddDisk(ctx context.Context, disk Disk) error

	// AddFS shares a host directory with the guest under a tag.
	AddFS(ctx context.Context, fs SharedFS) error

	// Exited is closed when the hypervisor process has gone, for whatever
	// reason (Info().ExitError then says how). It works for a VM found
	// again with Attach too.
	Exited() <-chan struct{}

	// Info is what the VM is now: its process, where its agent and its
	// console are, how it exited.
	Info() Info

	// Capabilities says what this VM can do.
	Capabilities() Capabilities
}

// Info is what a VM is now (Hypervisor.Info).
type Info struct {
	// Pid is the hypervisor's process id, 0 before Start.
	Pid int
	// AgentAddress tells how the host reaches the guest agent:
	// "unix:///path/agent.sock" for a virtio-serial port bridged to a
	// unix socket, "vsock://CID:PORT" for vhost-vsock,
	// "hvsock:///path.sock:PORT" for hybrid vsock (unix socket plus a
	// "CONNECT PORT" line). Known once the VM is configured (after
	// Start); empty before.
	AgentAddress string
	// ConsoleLog is the path of the file that receives the guest's
	// console (kernel messages and, through them, the agent's logs).
	ConsoleLog string
	// ExitError is nil while the VM runs. Once it has exited, it says
	// how, with the tail of the console log: what a caller whose agent
	// never answered wants to show.
	ExitError error
}

// Detacher is a Hypervisor whose handle holds something of its own
// (a control connection, watchers) to release when a process is done
// with a VM it leaves running.
type Detacher interface {
	// Close releases this handle and leaves the VM running. The handle
	// is unusable afterwards (Exited may never fire); Attach gives a new
	// one. Stop does not need Close.
	Close() error
}

// Detach releases h's handle and leaves its VM running (Detacher); a
// handle that holds nothing has nothing to release.
func Detach(h Hypervisor) error {
	if d, ok := h.(Detacher); ok {
		return d.Close()
	}
	return nil
}

// Pauser is a Hypervisor whose guest can be frozen (Capabilities.Pause).
type Pauser interface {
	// Pause freezes the guest's vCPUs; Resume lets them run again.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Unplugger is a Hypervisor whose devices can be removed while it runs.
type Unplugger interface {
	// RemoveNIC detaches the NIC with that id; RemoveDisk the disk.
	// An unknown id is errdefs.ErrNotFound.
	RemoveNIC(ctx context.Context, id string) error
	RemoveDisk(ctx context.Context, id string) error
}

// StateReporter is a Hypervisor that can say what the VM is doing.
type StateReporter interface {
	// State asks the hypervisor what the VM is doing.
	State(ctx context.Context) (State, error)
}

// Templater is a Hypervisor that can be saved as a template, for
// VMs started from it (Config.RestoreState) instead of booting.
type Templater interface {
	// SaveTemplate pauses the VM and writes its device state to path.
	// The guest's RAM is not in it: it stays in Config.MemoryFile, which
	// must be mapped shared. The VM stays paused; Stop it afterwards.
	SaveTemplate(ctx context.Context, path string) error
}

// Lacks is the error of a VM without a capability (an optional
// interface): it names the VM's type and the capability, and wraps
// errdefs.ErrNotImplemented.
func Lacks(h Hypervisor, capability string) error {
	return fmt.Errorf("hypervisor %T: %s: %w", h, capability, errdefs.ErrNotImplemented)
}

// Pause freezes h's guest, if h is a Pauser.
func Pause(ctx context.Context, h Hypervisor) error {
	p, ok := h.(Pauser)
	if !ok {
		return Lacks(h, "pause")
	}
	return p.Pause(ctx)
}

// Resume lets h's guest run again, if h is a Pauser.
func Resume(ctx context.Context, h Hypervisor) error {
	p, ok := h.(Pauser)
	if !ok {
		return Lacks(h, "resume")
	}
	return p.Resume(ctx)
}

// RemoveNIC detaches a NIC from h, if h is an Unplugger.
func RemoveNIC(ctx context.Context, h Hypervisor, id string) error {
	u, ok := h.(Unplugger)
	if !ok {
		return Lacks(h, "remove a nic")
	}
	return u.RemoveNIC(ctx, id)
}

// RemoveDisk detaches a disk from h, if h is an Unplugger.
func RemoveDisk(ctx context.Context, h Hypervisor, id string) error {
	u, ok := h.(Unplugger)
	if !ok {
		return Lacks(h, "remove a disk")
	}
	return u.RemoveDisk(ctx, id)
}

// VMState asks h what the VM is doing, if h is a StateReporter.
func VMState(ctx context.Context, h Hypervisor) (State, error) {
	r, ok := h.(StateReporter)
	if !ok {
		return "", Lacks(h, "state")
	}
	return r.State(ctx)
}

// State is what the VM is doing.
type State string

const (
	StateCreated State = "created" // configured, not started
	StateRunning State = "running"
	StatePaused  State = "paused"
	StateStopped State = "stopped" // the process has gone
)

// Capabilities says what a VM (of a backend, on this host) can do.
type Capabilities struct {
	// Hotplug after Start.
	BlockHotplug bool
	NetHotplug   bool
	FSHotplug    bool
	// Pause and Resume work.
	Pause bool
	// CPUHotplug and MemoryHotplug: the VM is a Resizer with room to
	// grow (Config.MaxCPUs, MaxMemoryMiB) or something to remove.
	CPUHotplug    bool
	MemoryHotplug bool
	// CPUUnplug: a hotplugged vCPU can be taken out again (SetCPUs
	// below the vCPUs plugged); without it they stay until the VM stops.
	CPUUnplug bool
	// SharedFS lists the shared file system kinds the backend supports.
	SharedFS []FSKind
	// AgentTransport is the transport this VM uses (or will use).
	AgentTransport string
	// Accel is the acceleration this VM runs (or will run) under.
	Accel string
}

// Acceleration choices for Config.Accel.
const (
	AccelAuto = "auto" // KVM when a guest really runs under it, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Agent transport choices for Config.AgentTransport.
const (
	TransportAuto         = "auto"          // vsock when the host has it, else virtio-serial
	TransportVsock        = "vsock"         // vhost-vsock
	TransportVirtioSerial = "virtio-serial" // a port named AgentPortName, bridged to a unix socket
	TransportHybridVsock  = "hybrid-vsock"  // unix socket + "CONNECT <port>\n" (Cloud Hypervisor, Firecracker)
)

const (
	// AgentPortName is the name of the virtio-serial port the agent
	// listens on.
	AgentPortName = "agent.channel.0"
	// DataPortName is the name of the virtio-serial port that carries
	// process stdio beside the agent's port (raw framed bytes, no
	// ttRPC); a backend that has one tells where with DataAddresser.
	DataPortName = "vc.data.0"
	// AgentVsockPort is the vsock port the agent listens on.
	AgentVsockPort = 1024
)

// DataAddresser is a Hypervisor with a data port (DataPortName) bridged
// to a host unix socket; DataAddress is its path, empty when the VM has
// none (another transport, or a VM restored from a template without one).
type DataAddresser interface {
	DataAddress() string
}

// Resizer is a Hypervisor whose vCPUs and memory change while it runs
// (Capabilities.CPUHotplug, MemoryHotplug), within Config.MaxCPUs and
// MaxMemoryMiB and never below Config.FixedCPUs and FixedMemoryMiB.
// Beyond those bounds, the methods fail with errdefs.ErrResourceExhausted
// naming the bound, and change nothing. Callers serialise resizes (pkg/vc
// holds the sandbox lock).
type Resizer interface {
	// Size is the VM's vCPUs and memory now (asked of the hypervisor).
	Size(ctx context.Context) (Size, error)

	// SetCPUs plugs or unplugs vCPUs until the VM has n. The guest
	// must bring new ones online (the agent's OnlineCPUMem); it takes
	// removed ones offline itself as it ejects them, and may refuse
	// (errdefs.ErrFailedPrecondition). Unplugging where
	// Capabilities.CPUUnplug is false fails with ErrNotImplemented. A
	// failure puts back the vCPUs it had removed, or removes those it
	// had added.
	SetCPUs(ctx context.Context, n uint32) error

	// SetMemory plugs or unplugs memory until the VM has mib MiB,
	// which must be FixedMemoryMiB plus whole MemoryStepMiB steps.
	// Added memory is onlined by the guest kernel (movable, so that
	// it can go again); removing memory the guest cannot offline
	// fails with errdefs.ErrFailedPrecondition. A failure undoes what
	// it did, as SetCPUs does.
	SetMemory(ctx context.Context, mib uint32) error
}

// Size is a VM's vCPUs and memory.
type Size struct {
	CPUs      uint32 `json:"cpus"`
	MemoryMiB uint32 `json:"memory_mib"`
}
