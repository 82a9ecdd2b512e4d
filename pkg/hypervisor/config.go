package hypervisor

import (
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"regexp"

	"github.com/containerd/errdefs"
)

// Config describes one VM, independently of the backend that runs it.
// Zero values mean the defaults written beside each field; Validate fills
// them in.
type Config struct {
	// ID names the VM in logs and in the hypervisor (required; letters,
	// digits, '.', '_', '-').
	ID string

	// StateDir is the VM's own directory (required, absolute): the
	// control and agent sockets, the pid file, the console log and the
	// hypervisor's log go there, and the backend's record of the running
	// VM that Attach reads. It is created if missing and not removed.
	StateDir string

	// HypervisorPath is the VMM binary; empty for the backend's default
	// (qemu-system-x86_64 on $PATH for qemu).
	HypervisorPath string

	// VirtiofsdPath is the daemon serving virtio-fs shares (SharedFS of
	// kind FSVirtioFS); empty for the backend's default (qemu: QEMU's
	// own, /usr/lib/qemu/virtiofsd).
	VirtiofsdPath string

	// Firmware is the BIOS image; empty for the backend's default (qemu:
	// qboot when installed, else SeaBIOS).
	Firmware string

	// CPUs is the number of vCPUs at boot (default 1). MaxCPUs, when
	// larger, reserves room for CPU hotplug (Resizer.SetCPUs).
	CPUs    uint32
	MaxCPUs uint32

	// MemoryMiB is the guest memory at boot (default 256).
	// MaxMemoryMiB, when larger, reserves room for memory hotplug
	// (Resizer.SetMemory), in steps of MemoryStepMiB: at most
	// MaxMemorySteps of them.
	MemoryMiB    uint32
	MaxMemoryMiB uint32

	// FixedCPUs and FixedMemoryMiB are the part of CPUs and MemoryMiB a
	// resize can never take away (0: all of it). The rest is plugged at
	// boot as the devices a hotplug adds, so that a resize can remove it
	// as it removes hotplugged ones.
	FixedCPUs      uint32
	FixedMemoryMiB uint32

	// Kernel is the guest kernel image (required). Initrd is the initial
	// ram disk; without one, the root file system must come from a disk
	// and KernelParams must say so (root=/dev/vda).
	Kernel string
	Initrd string

	// KernelParams is appended to the backend's defaults (for qemu:
	// "console=ttyS0 quiet panic=1"), so a later "loglevel=7" wins.
	KernelParams string

	// Accel is AccelAuto (default), AccelKVM or AccelTCG.
	Accel string

	// AgentTransport is TransportAuto (default), TransportVsock or
	// TransportVirtioSerial (backends may support TransportHybridVsock).
	AgentTransport string

	// HotplugSlots is the number of free slots reserved for devices
	// added after Start (default 2; -1 for none). Only backends that need
	// slots reserved at boot (qemu q35: PCIe root ports) use it.
	HotplugSlots int

	// Devices present at boot. More can be added before Start with the
	// Add methods.
	SharedFS []SharedFS
	Disks    []Disk
	NICs     []NIC

	// NAT, when set, is a NIC on the hypervisor's user-mode network stack
	// (outbound NAT through the host, published ports), present at boot.
	NAT *NATNIC

	// MemoryFile, when set, backs the guest's RAM with this file instead
	// of anonymous memory. MemoryShared maps it shared: the guest's
	// writes reach the file (a template being made, see Templater).
	// Otherwise it is mapped private: copy-on-write, so the VMs started
	// from one template share its pages until they write them, and the
	// file is never written.
	MemoryFile   string
	MemoryShared bool

	// NoBalloon leaves out the memory balloon, whose free page reporting
	// hands the host back the memory the guest frees (on by default; a
	// backend may leave it out where it cannot report safely: qemu does
	// with a MemoryFile).
	NoBalloon bool

	// RestoreState, when set, makes Start restore the device state saved
	// in this file by Templater.SaveTemplate instead of booting: the VM
	// resumes where the template was paused, with MemoryFile (mapped
	// private) as its RAM. The configuration must have the template's
	// devices and size; their backends (sockets, shared directories) may
	// differ.
	RestoreState string

	// DieWithParent kills the VM when the process that started it dies
	// (PR_SET_PDEATHSIG). Off by default: the CLI starts VMs that outlive
	// it, and finds them again with Attach. (Linux ties the signal to the
	// thread that forked; Go keeps its threads, except one a goroutine
	// exits while locked to.)
	DieWithParent bool

	// Cgroup, when set, starts the backend's processes (the VMM and its
	// helpers) in a host cgroup from their first instruction, before
	// the guest's RAM is touched, so it is charged there (pkg/vc sets it:
	// internal/hostcgroup).
	Cgroup CgroupPlacer

	// User is the host user the VMM runs as when it is started by root:
	// "" for the backend's default (qemu: an unprivileged user of its
	// own, in a mount namespace holding only what the VM uses), UserRoot
	// to keep root's privileges and the host's mounts. Ignored when the
	// caller is not root: the VMM is then as unprivileged as its caller.
	User string

	// Logger receives the backend's logs; nil for slog.Default(). The
	// backend adds "vm" = ID.
	Logger *slog.Logger
}

// UserRoot is the Config.User that runs the VMM as root, unconfined.
const UserRoot = "root"

// CgroupPlacer starts processes in a host cgroup.
type CgroupPlacer interface {
	// Prepare readies cmd (cgroup v2: its CLONE_INTO_CGROUP) and returns
	// what the thread that forks it runs, locked to it, before the fork
	// (cgroup v1: the thread joins the cgroup, which the child inherits)
	// and after; either may be nil.
	Prepare(cmd *exec.Cmd) (enter func() error, leave func(), err error)
}

// Defaults used by Validate, and the bounds of a VM's size. These are the
// only ones: pkg/vc, the shim, the CLI and annotations pass zero for "the
// default" and get their errors from CheckCPUs and CheckMemoryMiB.
const (
	DefaultCPUs         = 1
	DefaultMemoryMiB    = 256
	DefaultHotplugSlots = 2
	// MinMemoryMiB is the least memory a VM may have: the guest kernel,
	// the agent and a small container need about this much.
	MinMemoryMiB = 128
	// MaxVCPUs is the most vCPUs a VM may have.
	MaxVCPUs = 64
	// MaxVMMemoryMiB is the most memory a VM may have (1 TiB).
	MaxVMMemoryMiB = 1 << 20
	// MemoryStepMiB is the unit of memory hotplug: a guest onlines and
	// offlines memory in blocks of this size (x86_64's memory block),
	// so memory beyond FixedMemoryMiB comes in whole steps.
	MemoryStepMiB = 128
	// MaxMemorySteps is the most memory steps a VM may have room for
	// (QEMU's 256 DIMM slots).
	MaxMemorySteps = 256
)

// CheckCPUs returns the vCPU count to use for n (0: DefaultCPUs), or an
// error naming field.
func CheckCPUs(field string, n uint64) (uint32, error) {
	if n == 0 {
		return DefaultCPUs, nil
	}
	if n > MaxVCPUs {
		return 0, fmt.Errorf("%s %d: more than %d vCPUs: %w", field, n, MaxVCPUs, errdefs.ErrInvalidArgument)
	}
	return uint32(n), nil
}

// CheckMemoryMiB returns the memory to use for n MiB (0:
// DefaultMemoryMiB), or an error naming field.
func CheckMemoryMiB(field string, n uint64) (uint32, error) {
	if n == 0 {
		return DefaultMemoryMiB, nil
	}
	if n < MinMemoryMiB {
		return 0, fmt.Errorf("%s %d: below the minimum of %d MiB: %w", field, n, MinMemoryMiB, errdefs.ErrInvalidArgument)
	}
	if n > MaxVMMemoryMiB {
		return 0, fmt.Errorf("%s %d: more than 1 TiB: %w", field, n, errdefs.ErrInvalidArgument)
	}
	return uint32(n), nil
}

// validateMemoryHotplug checks MaxMemoryMiB and FixedMemoryMiB against
// MemoryMiB and fills in their defaults.
func (c *Config) validateMemoryHotplug() error {
	if c.FixedMemoryMiB == 0 {
		c.FixedMemoryMiB = c.MemoryMiB
	}
	if c.MaxMemoryMiB == 0 {
		c.MaxMemoryMiB = c.MemoryMiB
	}
	switch {
	case c.FixedMemoryMiB < MinMemoryMiB || c.FixedMemoryMiB > c.MemoryMiB:
		return fmt.Errorf("vm %s: fixed memory %d MiB: want %d to memory_mib %d: %w", c.ID, c.FixedMemoryMiB, MinMemoryMiB, c.MemoryMiB, errdefs.ErrInvalidArgument)
	case (c.MemoryMiB-c.FixedMemoryMiB)%MemoryStepMiB != 0:
		return fmt.Errorf("vm %s: memory_mib %d: the %d MiB above the fixed %d MiB are not whole %d MiB steps: %w", c.ID, c.MemoryMiB, c.MemoryMiB-c.FixedMemoryMiB, c.FixedMemoryMiB, MemoryStepMiB, errdefs.ErrInvalidArgument)
	case c.MaxMemoryMiB < c.MemoryMiB:
		return fmt.Errorf("vm %s: max memory %d MiB below memory_mib %d: %w", c.ID, c.MaxMemoryMiB, c.MemoryMiB, errdefs.ErrInvalidArgument)
	case (c.MaxMemoryMiB-c.FixedMemoryMiB)/MemoryStepMiB > MaxMemorySteps:
		return fmt.Errorf("vm %s: max memory %d MiB: more than %d steps of %d MiB above the fixed %d MiB: %w", c.ID, c.MaxMemoryMiB, MaxMemorySteps, MemoryStepMiB, c.FixedMemoryMiB, errdefs.ErrInvalidArgument)
	}
	// Room is whole steps.
	c.MaxMemoryMiB -= (c.MaxMemoryMiB - c.FixedMemoryMiB) % MemoryStepMiB
	return nil
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks c and fills in defaults. Errors wrap
// errdefs.ErrInvalidArgument, or errdefs.ErrAlreadyExists for two devices
// of a kind with the same id.
func (c *Config) Validate() error {
	if !idPattern.MatchString(c.ID) {
		return fmt.Errorf("vm id %q: want 1-128 letters, digits, '.', '_' or '-': %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("vm %s: state dir %q must be an absolute path: %w", c.ID, c.StateDir, errdefs.ErrInvalidArgument)
	}
	if c.Kernel == "" {
		return fmt.Errorf("vm %s: no kernel: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	cpus, err := CheckCPUs("vm "+c.ID+": cpus", uint64(c.CPUs))
	if err != nil {
		return err
	}
	c.CPUs = cpus
	if c.MaxCPUs == 0 {
		c.MaxCPUs = c.CPUs
	}
	if c.MaxCPUs < c.CPUs {
		return fmt.Errorf("vm %s: max cpus %d below cpus %d: %w", c.ID, c.MaxCPUs, c.CPUs, errdefs.ErrInvalidArgument)
	}
	if c.MaxCPUs > MaxVCPUs {
		return fmt.Errorf("vm %s: max cpus %d: more than %d vCPUs: %w", c.ID, c.MaxCPUs, MaxVCPUs, errdefs.ErrInvalidArgument)
	}
	if c.FixedCPUs == 0 {
		c.FixedCPUs = c.CPUs
	}
	if c.FixedCPUs > c.CPUs {
		return fmt.Errorf("vm %s: fixed cpus %d: want 1 to cpus %d: %w", c.ID, c.FixedCPUs, c.CPUs, errdefs.ErrInvalidArgument)
	}
	mem, err := CheckMemoryMiB("vm "+c.ID+": memory_mib", uint64(c.MemoryMiB))
	if err != nil {
		return err
	}
	c.MemoryMiB = mem
	if err := c.validateMemoryHotplug(); err != nil {
		return err
	}
	switch c.Accel {
	case "":
		c.Accel = AccelAuto
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("vm %s: accel %q: want auto, kvm or tcg: %w", c.ID, c.Accel, errdefs.ErrInvalidArgument)
	}
	switch c.AgentTransport {
	case "":
		c.AgentTransport = TransportAuto
	case TransportAuto, TransportVsock, TransportVirtioSerial, TransportHybridVsock:
	default:
		return fmt.Errorf("vm %s: agent transport %q: want auto, vsock, virtio-serial or hybrid-vsock: %w", c.ID, c.AgentTransport, errdefs.ErrInvalidArgument)
	}
	switch {
	case c.HotplugSlots == 0:
		c.HotplugSlots = DefaultHotplugSlots
	case c.HotplugSlots < 0:
		c.HotplugSlots = -1
	}
	ids := map[string]bool{}
	for i := range c.SharedFS {
		if err := c.SharedFS[i].Validate(); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
		if err := unique(ids, "fs", c.SharedFS[i].Tag); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
	}
	for i := range c.Disks {
		if err := c.Disks[i].Validate(); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
		if err := unique(ids, "disk", c.Disks[i].ID); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
	}
	for i := range c.NICs {
		if err := c.NICs[i].Validate(); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
		if err := unique(ids, "nic", c.NICs[i].ID); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
	}
	if c.NAT != nil {
		nat := *c.NAT
		nat.Forwards = append([]PortForward(nil), nat.Forwards...)
		if err := nat.Validate(); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
		if err := unique(ids, "nic", nat.ID); err != nil {
			return fmt.Errorf("vm %s: %w", c.ID, err)
		}
		c.NAT = &nat
	}
	if c.MemoryFile != "" && !filepath.IsAbs(c.MemoryFile) {
		return fmt.Errorf("vm %s: memory file %q must be an absolute path: %w", c.ID, c.MemoryFile, errdefs.ErrInvalidArgument)
	}
	if c.RestoreState != "" {
		switch {
		case !filepath.IsAbs(c.RestoreState):
			return fmt.Errorf("vm %s: restore state %q must be an absolute path: %w", c.ID, c.RestoreState, errdefs.ErrInvalidArgument)
		case c.MemoryFile == "":
			return fmt.Errorf("vm %s: restore state %s without the template's memory file: %w", c.ID, c.RestoreState, errdefs.ErrInvalidArgument)
		case c.MemoryShared:
			return fmt.Errorf("vm %s: a VM restored from a template maps its memory file private, not shared (it would write into the template): %w", c.ID, errdefs.ErrInvalidArgument)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func unique(seen map[string]bool, kind, id string) error {
	if seen[kind+"/"+id] {
		return fmt.Errorf("two %s devices named %q: %w", kind, id, errdefs.ErrAlreadyExists)
	}
	seen[kind+"/"+id] = true
	return nil
}
