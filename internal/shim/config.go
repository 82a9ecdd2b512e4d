package shim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/pelletier/go-toml/v2"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/hostcgroup"
	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/network"
	"github.com/virtcontainers/vc/pkg/vc"
)

// ConfigEnv names the shim's configuration file; containerd passes its
// environment on to the shim. Without it, DefaultConfigPath is read if it
// exists.
const ConfigEnv = "VC_SHIM_CONFIG"

// DefaultConfigPath is the shim's configuration file.
const DefaultConfigPath = "/etc/vc/containerd-shim-vc-v2.toml"

// DefaultStateRoot keeps sandbox state short: QEMU's sockets live in
// <state_root>/<sandbox id>/vm, and a unix socket path has 107 bytes, so
// with 64-character CRI ids the root may have at most 23.
const DefaultStateRoot = "/run/vc/shim"

// Config is the shim's configuration (TOML). Every field has a default;
// sandbox settings may be overridden per pod by io.virtcontainers.*
// annotations listed in EnableAnnotations.
//
//	state_root = "/run/vc/shim"     # sandbox state (pkg/vc)
//	data_root = "/var/lib/vc"       # guest images (vc image build)
//	kernel = ""                     # empty: the current guest image
//	initrd = ""
//	accel = "auto"                  # auto, kvm or tcg
//	cpus = 0                        # 0: pkg/hypervisor's default (1)
//	memory_mib = 0                  # 0: pkg/hypervisor's default (256; at least 128)
//	max_cpus = 0                    # a resize grows the VM up to this (may exceed the host's CPUs); 0: the host's CPUs
//	max_memory_mib = 0              # 0: the host's memory (at most 32 GiB above the VM's own)
//	kernel_params = []
//	debug = false                   # agent debug log in the console log
//	network_model = "tcfilter"      # tcfilter (tap + tc mirred) or macvtap
//	disable_nat = false             # true: a container without a network namespace has loopback only
//	host_loopback = false           # true: the NAT reaches the host's 127.0.0.1 (docs/containerd.md)
//	enable_annotations = []         # e.g. ["cpus", "memory_mib"]
//	pod_sizing = true               # CPU and memory limits grow the VM
//	stop_timeout = "10s"            # how long a VM gets to power off
//	factory = ""                    # a factory's directory (vc factory init): VMs that fit start from its template
//	shared_fs = "9p"                # how containers' files reach the guest: 9p or virtio-fs (not with a factory; docs/performance.md)
//	vm_cgroup = "account"           # the VM in a host cgroup under the pod's: off, account (cpuacct, memory, pids) or all (+ cpu quota); docs/kubernetes.md
//	[tracing]                       # OpenTelemetry (off): enabled, endpoint, insecure, service_name (docs/observability.md)
type Config struct {
	StateRoot string `toml:"state_root"`
	DataRoot  string `toml:"data_root"`
	Kernel    string `toml:"kernel"`
	Initrd    string `toml:"initrd"`
	Accel     string `toml:"accel"`
	CPUs      uint32 `toml:"cpus"`
	MemoryMiB uint32 `toml:"memory_mib"`
	// MaxCPUs and MaxMemoryMiB bound what a VM grows to when its
	// containers' limits grow (an update, a container joining); pkg/vc
	// HypervisorConfig's, validated there.
	MaxCPUs      uint32   `toml:"max_cpus"`
	MaxMemoryMiB uint32   `toml:"max_memory_mib"`
	KernelParams []string `toml:"kernel_params"`
	Debug        bool     `toml:"debug"`
	NetworkModel string   `toml:"network_model"`
	// DisableNAT leaves a sandbox without a network namespace (`ctr run`
	// without CNI) with loopback only, instead of the user-mode NAT that
	// gives it outbound network and published ports.
	DisableNAT bool `toml:"disable_nat"`
	// NoBalloon leaves out the VM's memory balloon (free page
	// reporting: the memory the guest frees goes back to the host).
	NoBalloon bool `toml:"no_balloon"`
	// VMMUser is the host user QEMU runs as: empty for vc-qemu,
	// unprivileged, in a mount namespace of its own; "root" for root's
	// privileges (hypervisor.Config.User).
	VMMUser string `toml:"vmm_user"`
	// SharedFS is how containers' files reach the guest: "9p" (the
	// default) or "virtio-fs" (pkg/vc HypervisorConfig.SharedFS).
	SharedFS string `toml:"shared_fs"`
	// HostLoopback lets a sandbox's NAT reach the host's loopback (pkg/vc
	// NATConfig.HostLoopback): off, as it opens every service of the
	// host's 127.0.0.1 to the guest.
	HostLoopback      bool     `toml:"host_loopback"`
	EnableAnnotations []string `toml:"enable_annotations"`
	// PodSizing adds what the VM's workload may use to cpus and
	// memory_mib when it boots: a CRI pod's limits (the sum of its
	// containers', which containerd passes as io.kubernetes.cri.sandbox-*
	// annotations) or a single container's own. vCPUs stay within the
	// host's CPUs.
	PodSizing   bool     `toml:"pod_sizing"`
	StopTimeout duration `toml:"stop_timeout"`
	// Factory is the directory of a factory (pkg/vc InitFactory, `vc
	// factory init --data-root` makes <data-root>/factory): a sandbox
	// whose VM fits its template (size, kernel, initrd, network: a CRI
	// pod's CNI namespace needs a template made with --network none)
	// starts from it; one that does
	// not fit, or without a template there, boots (logged). A damaged or
	// stale template fails the sandbox's creation.
	Factory string `toml:"factory"`
	// VMCgroup puts a sandbox's VM (QEMU, all its threads) in a host
	// cgroup of its own, from its start: the sandbox container's
	// linux.cgroupsPath, under a CRI pod's cgroup, so the kubelet's pod
	// figures (/stats/summary) and the pod's limits (plus the
	// RuntimeClass's overhead) cover what the VM costs the host. "account"
	// (default, cgroup v1): cpuacct, memory and pids; "all": also cpu,
	// the pod's CPU quota throttling QEMU (under TCG the emulation costs
	// far more host CPU than the guest uses, so a tight limit slows the
	// guest); "off": QEMU stays in the shim's cgroups. On cgroup v2
	// account and all are the same (pkg/vc CgroupConfig).
	VMCgroup string `toml:"vm_cgroup"`
	// PolicyFile is an agent policy (a Rego document, docs/security.md)
	// every sandbox's agent enforces; read when a sandbox is created. Its
	// sandboxes boot the policy image (vc-agent-policy). The annotation
	// io.virtcontainers.policy replaces it where enable_annotations
	// allows.
	PolicyFile string `toml:"policy_file"`
	// PolicyInitrd is the initrd a sandbox with a policy boots when
	// initrd is set (its agent must be vc-agent-policy); without initrd,
	// the policy image under data_root is.
	PolicyInitrd string `toml:"policy_initrd"`

	// Tracing exports OpenTelemetry spans over OTLP/gRPC (off by
	// default; the OTEL_* environment wins): [tracing] enabled, endpoint,
	// insecure, service_name (docs/observability.md).
	Tracing tracing.Config `toml:"tracing"`
}

// duration is a time.Duration written as "10s" in TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// vmCgroup is the host cgroup of the VM a container's spec boots: its
// linux.cgroupsPath (a CRI sandbox's is under its pod's cgroup), in
// VMCgroup's mode; none without a path.
func (c Config) vmCgroup(spec *specs.Spec) vc.CgroupConfig {
	if spec == nil || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return vc.CgroupConfig{}
	}
	return vc.CgroupConfig{Path: spec.Linux.CgroupsPath, Mode: c.VMCgroup}
}

// DefaultConfig is the configuration without a file.
func DefaultConfig() Config {
	return Config{
		StateRoot:   DefaultStateRoot,
		DataRoot:    guestconfig.DefaultDataRoot,
		Accel:       "auto",
		PodSizing:   true,
		StopTimeout: duration{10 * time.Second},
		VMCgroup:    string(hostcgroup.Account),
	}
}

// LoadConfig reads the configuration: the file $VC_SHIM_CONFIG names (it
// must exist), else DefaultConfigPath if it exists, else the defaults.
func LoadConfig() (Config, error) {
	path, must := os.Getenv(ConfigEnv), true
	if path == "" {
		path, must = DefaultConfigPath, false
	}
	if _, err := os.Stat(path); !must && errors.Is(err, os.ErrNotExist) {
		return DefaultConfig(), nil
	}
	return LoadConfigFile(path)
}

// LoadConfigFile reads the configuration file at path.
func LoadConfigFile(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("shim config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("shim config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a TOML configuration over the defaults; an unknown
// key is an error.
func ParseConfig(b []byte) (Config, error) {
	cfg := DefaultConfig()
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return Config{}, fmt.Errorf("%s: %w", sm.String(), errdefs.ErrInvalidArgument)
		}
		return Config{}, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return cfg, cfg.validate()
}

func (c *Config) validate() error {
	for _, f := range []struct{ name, path string }{{"state_root", c.StateRoot}, {"data_root", c.DataRoot}} {
		if !filepath.IsAbs(f.path) {
			return fmt.Errorf("%s %q: not an absolute path: %w", f.name, f.path, errdefs.ErrInvalidArgument)
		}
	}
	for _, f := range []struct{ name, path string }{{"policy_file", c.PolicyFile}, {"policy_initrd", c.PolicyInitrd}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fmt.Errorf("%s %q: not an absolute path: %w", f.name, f.path, errdefs.ErrInvalidArgument)
		}
	}
	if c.PolicyFile != "" && c.Initrd != "" && c.PolicyInitrd == "" {
		return fmt.Errorf("policy_file with initrd set: policy_initrd missing (an initrd whose agent is vc-agent-policy): %w", errdefs.ErrInvalidArgument)
	}
	if c.Factory != "" && !filepath.IsAbs(c.Factory) {
		return fmt.Errorf("factory %q: not an absolute path: %w", c.Factory, errdefs.ErrInvalidArgument)
	}
	if err := vc.CheckSharedFS("shared_fs", c.SharedFS); err != nil {
		return err
	}
	if c.SharedFS == vc.SharedFSVirtioFS && c.Factory != "" {
		return fmt.Errorf("shared_fs %q with factory %q: a factory's VMs share over 9p (QEMU cannot migrate virtio-fs): %w", c.SharedFS, c.Factory, errdefs.ErrInvalidArgument)
	}
	if (c.Kernel == "") != (c.Initrd == "") {
		return fmt.Errorf("kernel %q and initrd %q: set both or neither: %w", c.Kernel, c.Initrd, errdefs.ErrInvalidArgument)
	}
	// Zero stays zero: pkg/hypervisor fills in its defaults at boot.
	if _, err := hypervisor.CheckCPUs("cpus", uint64(c.CPUs)); err != nil {
		return err
	}
	if c.MemoryMiB != 0 {
		if _, err := hypervisor.CheckMemoryMiB("memory_mib", uint64(c.MemoryMiB)); err != nil {
			return err
		}
	}
	if _, err := annotations.CheckAllowlist(c.EnableAnnotations); err != nil {
		return fmt.Errorf("enable_annotations: %w", err)
	}
	if _, err := network.ParseModel(c.NetworkModel); err != nil {
		return fmt.Errorf("network_model: %w", err)
	}
	if _, err := hostcgroup.ParseMode("vm_cgroup", c.VMCgroup); err != nil {
		return err
	}
	if c.StopTimeout.Duration <= 0 {
		return fmt.Errorf("stop_timeout %s: must be positive: %w", c.StopTimeout, errdefs.ErrInvalidArgument)
	}
	return nil
}
