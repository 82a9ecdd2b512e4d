package qemu

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// vmRecord is what a running VM leaves in its state directory for Attach.
type vmRecord struct {
	ID           string `json:"id"`
	Pid          int    `json:"pid"`
	StartTime    uint64 `json:"start_time"` // /proc/PID/stat field 22, against pid reuse
	QEMUPath     string `json:"qemu_path"`
	Accel        string `json:"accel"`
	Transport    string `json:"agent_transport"`
	CID          uint32 `json:"cid,omitempty"`
	AgentAddress string `json:"agent_address"`
	// HasDataPort: the VM has the stdio data port (a record written
	// before there was one has none).
	HasDataPort  bool     `json:"data_port,omitempty"`
	HotplugSlots int      `json:"hotplug_slots"`
	Slots        []string `json:"slots"`
	CPUs         uint32   `json:"cpus"`
	MemoryMiB    uint32   `json:"memory_mib"`
	// The bounds of a resize; zero in a record of a VM that had none.
	FixedCPUs      uint32 `json:"fixed_cpus,omitempty"`
	MaxCPUs        uint32 `json:"max_cpus,omitempty"`
	FixedMemoryMiB uint32 `json:"fixed_memory_mib,omitempty"`
	MaxMemoryMiB   uint32 `json:"max_memory_mib,omitempty"`
	// VCPUThreads counts the vCPUs QEMU started (qemuMaxCPUs).
	VCPUThreads int                   `json:"vcpu_threads,omitempty"`
	Disks       []hypervisor.Disk     `json:"disks,omitempty"`
	NICs        []nicRecord           `json:"nics,omitempty"`
	SharedFS    []hypervisor.SharedFS `json:"shared_fs,omitempty"`
	// User is the unprivileged user QEMU runs as (confine.go); empty
	// when it runs as the process that started it. SharedMounts are the
	// binds its exports were given, undone when it is gone.
	User         string   `json:"user,omitempty"`
	SharedMounts []string `json:"shared_mounts,omitempty"`
}

type nicRecord struct {
	ID      string `json:"id"`
	TapName string `json:"tap_name,omitempty"`
	MAC     string `json:"mac"`
	MTU     int    `json:"mtu,omitempty"`
}

func (v *qemuVM) saveRecord() error {
	v.mu.Lock()
	if v.proc == nil {
		v.mu.Unlock()
		return errors.New("no process to record")
	}
	r := vmRecord{
		ID:           v.id,
		Pid:          v.proc.getPid(),
		QEMUPath:     v.qemuPath,
		Accel:        v.accel,
		Transport:    v.transport,
		CID:          v.cid,
		AgentAddress: v.agentAddr,
		HasDataPort:  !v.noDataPort && v.transport != hypervisor.TransportVsock,
		HotplugSlots: v.cfg.HotplugSlots,
		Slots:        append([]string(nil), v.slots...),
		CPUs:         v.cfg.CPUs,
		MemoryMiB:    v.cfg.MemoryMiB,

		FixedCPUs:      v.cfg.FixedCPUs,
		MaxCPUs:        v.cfg.MaxCPUs,
		FixedMemoryMiB: v.cfg.FixedMemoryMiB,
		MaxMemoryMiB:   v.cfg.MaxMemoryMiB,
		Disks:          v.cfg.Disks,
		SharedFS:       v.cfg.SharedFS,
		User:           v.user,
		SharedMounts:   v.sharedMounts,
	}
	for _, n := range v.cfg.NICs {
		r.NICs = append(r.NICs, nicRecord{ID: n.ID, TapName: n.TapName, MAC: n.MAC.String(), MTU: n.MTU})
	}
	v.mu.Unlock()
	st, err := proc.StartTime(r.Pid)
	if err != nil {
		return fmt.Errorf("record vm: %w", err)
	}
	r.StartTime = st
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("record vm: %w", err)
	}
	if err := writeFileAtomic(v.paths.Record, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record vm: %w", err)
	}
	return nil
}

// attachVM finds a running VM again from its state directory, typically in
// another process than the one that started it: it reconnects to QMP and
// watches the QEMU process through a pidfd. A VM that is no longer running
// gives an error wrapping errdefs.ErrNotFound.
//
// attachVM uses the VM's second QMP socket (the first belongs to the process
// that started it). QEMU serves one client per socket: while another
// attached process holds it, attachVM waits up to ctx's deadline.
func attachVM(ctx context.Context, stateDir string) (*qemuVM, error) {
	paths := pathsFor(stateDir)
	b, err := os.ReadFile(paths.Record)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no running qemu vm in %s: %w", stateDir, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("attach %s: %w", stateDir, err)
	}
	var r vmRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("attach %s: %s: %w", stateDir, paths.Record, err)
	}
	gone := fmt.Errorf("vm %s: qemu (pid %d) is no longer running: %w", r.ID, r.Pid, errdefs.ErrNotFound)
	pidfd, err := unix.PidfdOpen(r.Pid, 0)
	if err != nil {
		return nil, gone
	}
	// Checked once the pidfd is open, so that the pid cannot be reused
	// between the check and the watch.
	if st, err := proc.StartTime(r.Pid); err != nil || st != r.StartTime {
		unix.Close(pidfd)
		return nil, gone
	}
	proc := newPendingProcess()
	release, err := watchPidfd(proc, r.Pid, pidfd)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", stateDir, err)
	}
	cfg := hypervisor.Config{
		ID:             r.ID,
		StateDir:       stateDir,
		HypervisorPath: r.QEMUPath,
		Kernel:         "(attached)",
		CPUs:           r.CPUs,
		MemoryMiB:      r.MemoryMiB,
		FixedCPUs:      cmp.Or(r.FixedCPUs, r.CPUs),
		MaxCPUs:        cmp.Or(r.MaxCPUs, r.CPUs),
		FixedMemoryMiB: cmp.Or(r.FixedMemoryMiB, r.MemoryMiB),
		MaxMemoryMiB:   cmp.Or(r.MaxMemoryMiB, r.MemoryMiB),
		Accel:          r.Accel,
		AgentTransport: r.Transport,
		HotplugSlots:   r.HotplugSlots,
		Disks:          r.Disks,
		SharedFS:       r.SharedFS,
	}
	for _, n := range r.NICs {
		mac, err := net.ParseMAC(n.MAC)
		if err != nil {
			return nil, fmt.Errorf("attach %s: nic %s: %w", stateDir, n.ID, err)
		}
		cfg.NICs = append(cfg.NICs, hypervisor.NIC{ID: n.ID, TapName: n.TapName, MAC: mac, MTU: n.MTU})
	}
	// Config validation is not asked of an attached VM: its NICs may have
	// been given as files, which do not survive in the record.
	if cfg.CPUs == 0 {
		cfg.CPUs = hypervisor.DefaultCPUs
	}
	cfg.Logger = slog.Default()
	v := &qemuVM{
		id:           r.ID,
		paths:        paths,
		log:          cfg.Logger.With("vm", r.ID, "hypervisor", backendName),
		cfg:          cfg,
		started:      true,
		user:         r.User,
		sharedMounts: r.SharedMounts,
		qemuPath:     r.QEMUPath,
		accel:        r.Accel,
		transport:    r.Transport,
		cid:          r.CID,
		agentAddr:    r.AgentAddress,
		noDataPort:   !r.HasDataPort,
		slots:        r.Slots,
		proc:         proc,

		releaseWatch: release,
	}
	q, err := qmp.Dial(ctx, paths.AttachQMP, v.log)
	if err != nil {
		release()
		if proc.hasExited() {
			return nil, gone
		}
		return nil, fmt.Errorf("vm %s: attach: %w", r.ID, err)
	}
	v.qmp = q
	v.startEventLoop(q, proc)
	v.log.Debug("attached to vm", "pid", r.Pid)
	return v, nil
}
