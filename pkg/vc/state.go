package vc

import (
	"time"

	"github.com/virtcontainers/vc/pkg/network"
)

// State of a sandbox or container.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StatePaused  State = "paused"
	StateStopped State = "stopped"
)

// transitions are the state changes a sandbox or container may make; any
// other is a bug or a request in the wrong state. Staying put is always
// allowed (a second stop records nothing new).
var transitions = map[State][]State{
	StateCreated: {StateRunning, StateStopped},
	StateRunning: {StatePaused, StateStopped},
	StatePaused:  {StateRunning, StateStopped},
	StateStopped: nil,
}

// canMove tells whether from may become to.
func canMove(from, to State) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// in tells whether s is one of states; no states means any.
func (s State) in(states ...State) bool {
	if len(states) == 0 {
		return true
	}
	for _, t := range states {
		if s == t {
			return true
		}
	}
	return false
}

// SandboxStatus is what is persisted of a sandbox, and what StatusSandbox
// reports.
type SandboxStatus struct {
	ID      string        `json:"id"`
	State   State         `json:"state"`
	Created time.Time     `json:"created"`
	Config  SandboxConfig `json:"config"`
	// OwnerPid is the process that started the VM and serves AgentSocket.
	OwnerPid int `json:"owner_pid"`
	// VMPid is the hypervisor process.
	VMPid int `json:"vm_pid"`
	// OwnerStart and VMStart are the processes' start times, telling them
	// from later processes with the same pid.
	OwnerStart uint64 `json:"owner_start,omitempty"`
	VMStart    uint64 `json:"vm_start,omitempty"`
	// AgentSocket serves the agent protocol for other processes.
	AgentSocket string `json:"agent_socket"`
	// ConsoleLog is the guest console's log file.
	ConsoleLog string `json:"console_log"`
	// StopReason tells why a stopped sandbox stopped.
	StopReason string `json:"stop_reason,omitempty"`
	// Accel is the acceleration the VM really runs with.
	Accel string `json:"accel,omitempty"`
	// Boot tells where CreateSandbox spent its time.
	Boot BootTimes `json:"boot"`
	// VMDir is the directory of a VM taken from a factory's cache (its
	// vm/ and shared/), removed with the sandbox; empty for a VM the
	// sandbox started in its own directory.
	VMDir string `json:"vm_dir,omitempty"`
	// Endpoints are the links of Config.NetNS joined to the VM, and what
	// was made in the namespace for them (removed when the sandbox stops).
	Endpoints []network.Endpoint `json:"endpoints,omitempty"`
	// Reserved is what of the workload's limits the VM was sized for
	// (HypervisorConfig.Workload) no container has taken up yet: a
	// container joining takes its limits out of it (resize.go).
	Reserved Reservation `json:"reserved,omitzero"`
	// HostCgroup is the VM's host cgroup (Config.Cgroup, resolved),
	// removed with the sandbox; empty without one.
	HostCgroup string `json:"host_cgroup,omitempty"`
}

// Reservation is CPUs and memory held for containers to come.
type Reservation struct {
	CPUs      uint32 `json:"cpus,omitempty"`
	MemoryMiB uint32 `json:"memory_mib,omitempty"`
}

// BootTimes are the phases of CreateSandbox.
type BootTimes struct {
	// VMStart: until the hypervisor process runs and answers its control
	// channel.
	VMStart time.Duration `json:"vm_start_ns"`
	// AgentReady: from then until the agent answered (guest kernel boot
	// and agent start).
	AgentReady time.Duration `json:"agent_ready_ns"`
	// SandboxSetup: the agent's CreateSandbox (mounting the shared
	// directory).
	SandboxSetup time.Duration `json:"sandbox_setup_ns"`
	// FromTemplate: the VM resumed a factory's template instead of
	// booting (VMStart then includes the restore).
	FromTemplate bool `json:"from_template,omitempty"`
	// FromCache: the VM, of a template, was taken from the factory's
	// cache already started (VMStart is then the taking).
	FromCache bool `json:"from_cache,omitempty"`
}

// ContainerStatus is what is persisted of a container.
type ContainerStatus struct {
	ID        string          `json:"id"`
	SandboxID string          `json:"sandbox_id"`
	State     State           `json:"state"`
	Created   time.Time       `json:"created"`
	Config    ContainerConfig `json:"config"`
	ExitCode  int32           `json:"exit_code"`
	Exited    time.Time       `json:"exited,omitempty"`
	// Disks are the VM disks passing the container's block devices
	// (device.go), removed with the container.
	Disks []string `json:"disks,omitempty"`
}

func containerKey(id string) string { return "container-" + id }

const sandboxKey = "sandbox"
