package vc

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/cleanup"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// A sandbox's VM is the guest's own share (HypervisorConfig before
// AddWorkload, Workload.Base*) plus the limits of its containers: the
// pod's limits at boot (Workload), which its containers take up as they
// join (SandboxStatus.Reserved), and each container's own afterwards. A
// container joining grows the VM if it does not fit; Container.Update
// grows or shrinks it to fit. vCPUs and memory are hotplugged
// (hypervisor.Resizer) between the guest's own share, which is never
// removed, and MaxCPUs, MaxMemoryMiB.

// hostMemoryMiB is the host's memory.
func hostMemoryMiB() uint32 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint32(min(uint64(si.Totalram)*uint64(si.Unit)>>20, math.MaxUint32))
}

// validateMax checks MaxCPUs and MaxMemoryMiB against the host and the
// VM's size (CPUs and MemoryMiB validated). MaxCPUs may exceed the host's
// CPUs when set (up to hypervisor.MaxVCPUs): vCPUs beyond them only
// time-share the host's, which a person may choose (QEMU under TCG runs
// them fine); only the default stays at the host's count.
func (c *HypervisorConfig) validateMax() error {
	if c.MaxCPUs > hypervisor.MaxVCPUs {
		return fmt.Errorf("hypervisor.max_cpus %d: more than the %d vCPUs a VM may have: %w", c.MaxCPUs, hypervisor.MaxVCPUs, errdefs.ErrInvalidArgument)
	}
	if c.MaxCPUs != 0 && c.MaxCPUs < c.CPUs {
		return fmt.Errorf("hypervisor.max_cpus %d: below the VM's %d vCPUs (hypervisor.cpus and the workload's limits): %w", c.MaxCPUs, c.CPUs, errdefs.ErrInvalidArgument)
	}
	if host := hostMemoryMiB(); c.MaxMemoryMiB > host {
		return fmt.Errorf("hypervisor.max_memory_mib %d: more than the host's %d MiB: %w", c.MaxMemoryMiB, host, errdefs.ErrInvalidArgument)
	}
	if c.MaxMemoryMiB != 0 && c.MaxMemoryMiB < c.MemoryMiB {
		return fmt.Errorf("hypervisor.max_memory_mib %d: below the VM's %d MiB (hypervisor.memory_mib and the workload's limits): %w", c.MaxMemoryMiB, c.MemoryMiB, errdefs.ErrInvalidArgument)
	}
	return nil
}

// base is the guest's own share of a validated configuration's VM.
func (c *HypervisorConfig) base() (cpus, memoryMiB uint32) {
	if w := c.Workload; w != nil {
		return w.BaseCPUs, w.BaseMemoryMiB
	}
	return c.CPUs, c.MemoryMiB
}

// maxCPUs is the most vCPUs the VM may have.
func (c *HypervisorConfig) maxCPUs() uint32 {
	return max(c.CPUs, cmp.Or(c.MaxCPUs, uint32(min(runtime.NumCPU(), hypervisor.MaxVCPUs))))
}

// fixedMemoryMiB is the memory a resize never removes: the guest's own
// and the part of the workload's that is not a whole memory step.
func (c *HypervisorConfig) fixedMemoryMiB() uint32 {
	_, base := c.base()
	return c.MemoryMiB - (c.MemoryMiB-base)/hypervisor.MemoryStepMiB*hypervisor.MemoryStepMiB
}

// maxMemoryMiB is the most memory the VM may have.
func (c *HypervisorConfig) maxMemoryMiB() uint32 {
	if c.MaxMemoryMiB != 0 {
		return c.MaxMemoryMiB
	}
	fixed := c.fixedMemoryMiB()
	return max(c.MemoryMiB, min(hostMemoryMiB(), fixed+hypervisor.MaxMemorySteps*hypervisor.MemoryStepMiB))
}

// setResizeBounds gives a booting VM room to grow and makes its workload's
// share removable.
func (c *HypervisorConfig) setResizeBounds(hc *hypervisor.Config) {
	cpus, _ := c.base()
	hc.FixedCPUs = cpus
	hc.MaxCPUs = c.maxCPUs()
	hc.FixedMemoryMiB = c.fixedMemoryMiB()
	hc.MaxMemoryMiB = c.maxMemoryMiB()
}

// resizeTarget is the size the sandbox's VM needs for its containers
// (those not stopped, with next in place of its recorded self), the
// reservation they have not taken up, and the bounds of the VM.
func (s *Sandbox) resizeTarget(next *ContainerStatus) (hypervisor.Size, error) {
	h := &s.status.Config.Hypervisor
	cs, err := s.loadContainers()
	if err != nil {
		return hypervisor.Size{}, err
	}
	cpus, mib := s.status.Reserved.CPUs, s.status.Reserved.MemoryMiB
	add := func(c *ContainerStatus) error {
		ccpus, cmib, err := specLimits(c.Config.Spec)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
		cpus, mib = cpus+ccpus, mib+cmib
		return nil
	}
	for _, c := range cs {
		if c.State == StateStopped || c.ID == next.ID {
			continue
		}
		if err := add(c); err != nil {
			return hypervisor.Size{}, err
		}
	}
	if err := add(next); err != nil {
		return hypervisor.Size{}, err
	}
	baseCPUs, baseMiB := h.base()
	size := workloadSize(baseCPUs, baseMiB, cpus, mib, h.maxCPUs())
	// Memory beyond the fixed part comes in whole steps.
	fixed := h.fixedMemoryMiB()
	steps := (max(size.MemoryMiB, fixed) - fixed + hypervisor.MemoryStepMiB - 1) / hypervisor.MemoryStepMiB
	return hypervisor.Size{CPUs: size.CPUs, MemoryMiB: fixed + steps*hypervisor.MemoryStepMiB}, nil
}

// resize makes the VM the size its containers need with next (a container
// joining, or one whose limits change), and runs apply (the change in the
// guest) between the growing and the shrinking: a cgroup limit is raised
// once the VM has the room, and lowered before the room goes. growOnly
// (a container joining) never shrinks the VM. On error the VM has its
// size back and undo has undone apply. The lock is held.
func (s *Sandbox) resize(ctx context.Context, next *ContainerStatus, growOnly bool, apply func() error, undo func()) error {
	want, err := s.resizeTarget(next)
	if err != nil {
		return err
	}
	vm, release, err := s.liveVM(ctx)
	if err != nil {
		return err
	}
	defer release()
	rz, ok := vm.(hypervisor.Resizer)
	caps := vm.Capabilities()
	if !ok || !caps.CPUHotplug && !caps.MemoryHotplug {
		// A VM of a factory's template (its size is the template's),
		// or one started before VMs had room to grow.
		h := &s.status.Config.Hypervisor
		if h.CPUs >= want.CPUs && h.MemoryMiB >= want.MemoryMiB {
			return apply()
		}
		err := fmt.Errorf("container %s: the sandbox's VM (%d vCPUs, %d MiB) would need %d vCPUs and %d MiB, and cannot be resized (a VM of a factory's template, or one started without room for hotplug): %w",
			next.ID, h.CPUs, h.MemoryMiB, want.CPUs, want.MemoryMiB, errdefs.ErrNotImplemented)
		if !growOnly {
			return err
		}
		s.log.Warn("container joins a VM too small for its limits", "err", err)
		return apply()
	}
	have, err := rz.Size(ctx)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	if growOnly {
		want.CPUs, want.MemoryMiB = max(want.CPUs, have.CPUs), max(want.MemoryMiB, have.MemoryMiB)
	}
	if want.CPUs < have.CPUs && !caps.CPUUnplug {
		s.log.Info("the VM keeps its vCPUs: they cannot be unplugged here (QEMU under TCG)", "container", next.ID, "cpus", have.CPUs, "needed", want.CPUs)
		want.CPUs = have.CPUs
	}
	if max := s.status.Config.Hypervisor.maxMemoryMiB(); want.MemoryMiB > max {
		return fmt.Errorf("container %s: linux.resources.memory.limit: the sandbox's VM would need %d MiB, more than its hypervisor.max_memory_mib %d: %w",
			next.ID, want.MemoryMiB, max, errdefs.ErrResourceExhausted)
	}
	var cu cleanup.Cleanup
	defer cu.Clean()
	begin := time.Now()
	if want.CPUs > have.CPUs {
		if err := s.setCPUs(ctx, rz, have.CPUs, want.CPUs); err != nil {
			return err
		}
		if caps.CPUUnplug { // else they stay, as on any shrink
			cu.Add(func() { s.undoResize("vCPUs", rz.SetCPUs(context.WithoutCancel(ctx), have.CPUs)) })
		}
	}
	if want.MemoryMiB > have.MemoryMiB {
		if err := s.setMemory(ctx, rz, have.MemoryMiB, want.MemoryMiB); err != nil {
			return err
		}
		cu.Add(func() { s.undoResize("memory", rz.SetMemory(context.WithoutCancel(ctx), have.MemoryMiB)) })
	}
	if err := apply(); err != nil {
		return err
	}
	cu.Add(undo)
	if want.CPUs < have.CPUs {
		if err := s.setCPUs(ctx, rz, have.CPUs, want.CPUs); err != nil {
			return err
		}
		cu.Add(func() { s.undoResize("vCPUs", s.setCPUs(context.WithoutCancel(ctx), rz, want.CPUs, have.CPUs)) })
	}
	if want.MemoryMiB < have.MemoryMiB {
		if err := s.setMemory(ctx, rz, have.MemoryMiB, want.MemoryMiB); err != nil {
			return err
		}
	}
	cu.Release()
	if want != have {
		s.log.Info("vm resized", "container", next.ID, "cpus", fmt.Sprintf("%d->%d", have.CPUs, want.CPUs),
			"memory_mib", fmt.Sprintf("%d->%d", have.MemoryMiB, want.MemoryMiB), "took", time.Since(begin).Round(time.Millisecond))
	}
	return nil
}

// setCPUs plugs or unplugs vCPUs; plugged ones are brought online by the
// agent.
func (s *Sandbox) setCPUs(ctx context.Context, rz hypervisor.Resizer, have, want uint32) error {
	if err := rz.SetCPUs(ctx, want); err != nil {
		return fmt.Errorf("sandbox %s: resize to %d vCPUs: %w", s.id, want, err)
	}
	if want > have {
		if _, err := s.agent.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: true, NbCpus: want - have, CpuOnly: true}); err != nil {
			s.undoResize("vCPUs", rz.SetCPUs(context.WithoutCancel(ctx), have))
			return fmt.Errorf("sandbox %s: bring %d hotplugged vCPUs online: %w", s.id, want-have, err)
		}
	}
	return nil
}

// setMemory plugs or unplugs memory; the guest kernel onlines plugged
// memory itself, and the agent onlines any block it left offline.
func (s *Sandbox) setMemory(ctx context.Context, rz hypervisor.Resizer, have, want uint32) error {
	if err := rz.SetMemory(ctx, want); err != nil {
		return fmt.Errorf("sandbox %s: resize to %d MiB of memory: %w", s.id, want, err)
	}
	if want > have {
		if _, err := s.agent.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{Wait: true}); err != nil {
			s.undoResize("memory", rz.SetMemory(context.WithoutCancel(ctx), have))
			return fmt.Errorf("sandbox %s: bring hotplugged memory online: %w", s.id, err)
		}
	}
	return nil
}

func (s *Sandbox) undoResize(what string, err error) {
	if err != nil {
		s.log.Error("undo of a failed resize failed: the VM keeps its new size", "what", what, "err", err)
	}
}

// liveVM is the sandbox's VM: the owner's, or found again from another
// process (release closes that handle).
func (s *Sandbox) liveVM(ctx context.Context) (hypervisor.Hypervisor, func(), error) {
	if s.vm != nil {
		return s.vm, func() {}, nil
	}
	vm, err := s.attachVM(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	return vm, func() { hypervisor.Detach(vm) }, nil
}

// mergeResources is r over old: the fields r sets replace old's (as an
// update of a container's resources does); old is not changed.
func mergeResources(old, r *specs.LinuxResources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	for _, in := range []*specs.LinuxResources{old, r} {
		if in == nil {
			continue
		}
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// restoreResources is what puts old's limits back after r was applied:
// old's resources, with "no limit" where r set a limit old did not have.
func restoreResources(old, r *specs.LinuxResources) *specs.LinuxResources {
	out, _ := mergeResources(old, nil)
	if r.Memory != nil && r.Memory.Limit != nil && (out.Memory == nil || out.Memory.Limit == nil) {
		if out.Memory == nil {
			out.Memory = &specs.LinuxMemory{}
		}
		unlimited := int64(-1)
		out.Memory.Limit = &unlimited
	}
	if r.CPU != nil && r.CPU.Quota != nil && (out.CPU == nil || out.CPU.Quota == nil) {
		if out.CPU == nil {
			out.CPU = &specs.LinuxCPU{}
		}
		unlimited := int64(-1)
		out.CPU.Quota = &unlimited
	}
	return out
}
