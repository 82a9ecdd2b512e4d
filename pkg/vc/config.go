package vc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/network"
	"github.com/virtcontainers/vc/pkg/persist"
)

// HypervisorConfig says how to start the VM.
type HypervisorConfig struct {
	// Backend is the hypervisor backend (pkg/hypervisor's registry):
	// empty is DefaultBackend (qemu).
	Backend string `json:"backend,omitempty"`
	// Path of the hypervisor's binary; empty is the backend's default
	// (qemu: qemu-system-x86_64 in PATH).
	Path string `json:"path,omitempty"`
	// Kernel and Initrd of the guest.
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	// KernelParams are appended to the kernel command line.
	KernelParams []string `json:"kernel_params,omitempty"`
	// Accel is auto, kvm or tcg.
	Accel string `json:"accel,omitempty"`
	// CPUs and MemoryMiB size the VM; zero means pkg/hypervisor's
	// defaults (hypervisor.DefaultCPUs, DefaultMemoryMiB), and its
	// CheckCPUs and CheckMemoryMiB bound them.
	CPUs      uint32 `json:"cpus"`
	MemoryMiB uint32 `json:"memory_mib"`
	// MaxCPUs and MaxMemoryMiB bound what a running VM may grow to when
	// its containers' limits grow (Container.Update, a container
	// joining): vCPUs and memory are hotplugged up to them. Zero means
	// the host's CPUs and the host's memory (or 32 GiB more than the
	// VM's own, if that is less); more than the host has is an error.
	MaxCPUs      uint32 `json:"max_cpus,omitempty"`
	MaxMemoryMiB uint32 `json:"max_memory_mib,omitempty"`
	// Workload is what AddWorkload sized the VM for; nil when its whole
	// size is the guest's own.
	Workload *Workload `json:"workload,omitempty"`
	// Debug turns the agent's debug logging on (in the console log).
	Debug bool `json:"debug,omitempty"`
	// NoBalloon leaves out the VM's memory balloon, whose free page
	// reporting gives the host back the memory the guest frees (on by
	// default; never in a factory's template: hypervisor.Config).
	NoBalloon bool `json:"no_balloon,omitempty"`
	// User is the host user QEMU runs as when root starts it: empty for
	// the unprivileged vc-qemu in a mount namespace of its own
	// (hypervisor.Config.User), "root" for root's privileges.
	User string `json:"user,omitempty"`
	// SharedFS is how the sandbox's shared directory (containers' roots,
	// volumes) reaches the guest: SharedFS9P (the default) or
	// SharedFSVirtioFS (a virtiofsd per sandbox, as root; not from a
	// factory's template). docs/performance.md compares them.
	SharedFS string `json:"shared_fs,omitempty"`
	// Factory is the directory of the factory (pkg/factory) whose
	// template the VM resumes instead of booting: a record, set with
	// SandboxConfig.VMSource by pkg/factory's Use. Set without a
	// VMSource, CreateSandbox refuses it.
	Factory string `json:"factory,omitempty"`
}

// SandboxConfig describes a sandbox to create.
type SandboxConfig struct {
	ID         string           `json:"id"`
	Hostname   string           `json:"hostname,omitempty"`
	DNS        []string         `json:"dns,omitempty"`
	Hypervisor HypervisorConfig `json:"hypervisor"`
	// SharedPidNS puts every container in one pid namespace.
	SharedPidNS bool `json:"shared_pidns,omitempty"`
	// NetNS is the network namespace the VM joins (/var/run/netns/X,
	// /proc/PID/ns/net): each of its links gets a NIC in the VM. Empty:
	// the sandbox gets the user-mode NAT (see NAT).
	NetNS string `json:"netns,omitempty"`
	// NAT is the outbound network and the published ports of a sandbox
	// without NetNS: on unless NAT.Disabled (then loopback only).
	// Publishing with NetNS set is an error.
	NAT NATConfig `json:"nat,omitzero"`
	// Bridges join the VM to Linux bridges of the host's network
	// namespace (user networks: pkg/usernet), each through a tap of its
	// own, beside the NAT; only without NetNS.
	Bridges []BridgeNIC `json:"bridges,omitempty"`
	// NetworkModel is tcfilter (default: tap + tc mirred) or macvtap.
	NetworkModel string `json:"network_model,omitempty"`
	// Annotations are kept with the sandbox.
	Annotations map[string]string `json:"annotations,omitempty"`
	// StateRoot is where state lives (default persist.DefaultRoot).
	StateRoot string `json:"-"`
	// VMSource, when set, hands the sandbox a started VM instead of
	// booting one (pkg/factory: a factory's template and cache).
	// CreateSandbox fails, without starting anything, when the source
	// fails (a template missing, damaged, stale or that does not fit the
	// sandbox).
	VMSource VMSource `json:"-"`
	// Cgroup puts the VM in a host cgroup of the sandbox's own
	// (cgroup.go); none when its Path is empty.
	Cgroup CgroupConfig `json:"cgroup,omitzero"`
	// Policy is the agent policy (a Rego document, docs/security.md)
	// the agent enforces from its first request after boot: given to it
	// before anything else. It needs the policy image's agent
	// (Hypervisor.Initrd of guestconfig's policy image); the default
	// agent refuses it, and CreateSandbox fails.
	Policy string `json:"-"`
}

// ContainerConfig describes a container to create in a sandbox.
type ContainerConfig struct {
	ID string `json:"id"`
	// Rootfs is a host directory holding the container's root filesystem.
	Rootfs string `json:"rootfs"`
	// Spec is the OCI runtime spec; Root.Path is ignored (Rootfs is used)
	// and bind mount sources are host paths, shared into the guest.
	Spec *specs.Spec `json:"spec"`
	// LogPath, if set, receives the container's output when nobody is
	// attached (vc logs).
	LogPath string `json:"log_path,omitempty"`
	// Annotations are kept with the container.
	Annotations map[string]string `json:"annotations,omitempty"`
	// PrivatePidNS keeps the container out of the sandbox's shared pid
	// namespace (SandboxConfig.SharedPidNS): its processes get the pid
	// namespace its spec asks for. A pod's containers that do not share
	// the pod's pid namespace set it.
	PrivatePidNS bool `json:"private_pidns,omitempty"`
	// PodInfra makes the container's IPC and UTS namespaces the sandbox's
	// shared ones even where its spec asks for new ones: it is a pod's
	// infrastructure (pause) container, whose namespaces the pod's other
	// containers name by host path. A container whose spec names an IPC
	// or UTS namespace by path joins the sandbox's, whatever the path: on
	// the host it can only be another container's of the same pod.
	PodInfra bool `json:"pod_infra,omitempty"`
}

// Workload is what a VM was sized for at boot: the guest's own share
// (Base*, what HypervisorConfig said before AddWorkload) and the limits
// of the workload on top (a pod's, or a single container's).
type Workload struct {
	BaseCPUs      uint32 `json:"base_cpus"`
	BaseMemoryMiB uint32 `json:"base_memory_mib"`
	CPUs          uint32 `json:"cpus"`
	MemoryMiB     uint32 `json:"memory_mib"`
}

// Validate checks the hypervisor's configuration and sets the VM's size
// (zero is the defaults).
func (c *HypervisorConfig) Validate() error {
	var err error
	if c.CPUs, err = CheckHostCPUs("hypervisor.cpus", uint64(c.CPUs)); err != nil {
		return err
	}
	if c.MemoryMiB, err = hypervisor.CheckMemoryMiB("hypervisor.memory_mib", uint64(c.MemoryMiB)); err != nil {
		return err
	}
	if err := c.validateMax(); err != nil {
		return err
	}
	switch c.Accel {
	case "", "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("hypervisor.accel %q: want auto, kvm or tcg: %w", c.Accel, errdefs.ErrInvalidArgument)
	}
	if c.Factory != "" && !filepath.IsAbs(c.Factory) {
		return fmt.Errorf("hypervisor.factory %q: not an absolute path: %w", c.Factory, errdefs.ErrInvalidArgument)
	}
	if err := CheckSharedFS("hypervisor.shared_fs", c.SharedFS); err != nil {
		return err
	}
	if c.SharedFS == SharedFSVirtioFS && c.Factory != "" {
		return fmt.Errorf("hypervisor.shared_fs %q: a factory's VMs share over 9p (QEMU cannot migrate virtio-fs): %w", c.SharedFS, errdefs.ErrInvalidArgument)
	}
	// In order: the first bad one is the one named, every time.
	for _, f := range []struct{ field, path string }{{"hypervisor.kernel", c.Kernel}, {"hypervisor.initrd", c.Initrd}} {
		if f.path == "" {
			return fmt.Errorf("%s: not set: %w", f.field, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s %q: %v: %w", f.field, f.path, errors.Unwrap(err), errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (c *SandboxConfig) validate() error {
	if err := persist.ValidateID("sandbox id", c.ID); err != nil {
		return err
	}
	if _, err := network.ParseModel(c.NetworkModel); err != nil {
		return fmt.Errorf("network_model: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	if c.NetNS != "" {
		if _, err := os.Stat(c.NetNS); err != nil {
			return fmt.Errorf("netns %q: %w: %w", c.NetNS, err, errdefs.ErrInvalidArgument)
		}
	}
	if err := c.validateBridges(); err != nil {
		return err
	}
	if err := c.Hypervisor.Validate(); err != nil {
		return err
	}
	if err := c.Cgroup.validate(); err != nil {
		return err
	}
	if err := validatePolicy(c.Policy); err != nil {
		return err
	}
	if c.Hypervisor.Factory != "" && c.VMSource == nil {
		return fmt.Errorf("hypervisor.factory %q: no VMSource (pkg/factory's Use sets both): %w", c.Hypervisor.Factory, errdefs.ErrInvalidArgument)
	}
	return c.validateNAT()
}

// Validate checks a container's configuration without a sandbox: the id,
// the process, and that the rootfs is a directory.
func (c *ContainerConfig) Validate() error {
	if err := persist.ValidateID("container id", c.ID); err != nil {
		return err
	}
	if c.Spec == nil {
		return fmt.Errorf("container %s: spec: missing: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if c.Spec.Process == nil || len(c.Spec.Process.Args) == 0 {
		return fmt.Errorf("container %s: spec.process.args: empty: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if err := checkExecSize("container "+c.ID+": spec.process", c.Spec.Process); err != nil {
		return err
	}
	if c.Rootfs == "" {
		return fmt.Errorf("container %s: rootfs: not set: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if st, err := os.Stat(c.Rootfs); err != nil || !st.IsDir() {
		return fmt.Errorf("container %s: rootfs %q: not a directory: %w", c.ID, c.Rootfs, errdefs.ErrInvalidArgument)
	}
	return nil
}
