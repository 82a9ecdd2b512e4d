// Package oci is the codec between OCI runtime specs and the agent
// protocol's form of them: the host encodes (ToProto, ProcessToProto,
// ResourcesToProto), the agent decodes (FromProto, ProcessFromProto,
// ResourcesFromProto). It also makes the default spec of a container.
package oci

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
)

// ToProto converts an OCI spec to the agent protocol's Spec.
func ToProto(s *specs.Spec) *pb.Spec {
	if s == nil {
		return nil
	}
	out := &pb.Spec{
		Version:     s.Version,
		Process:     ProcessToProto(s.Process),
		Hostname:    s.Hostname,
		Annotations: s.Annotations,
	}
	if s.Root != nil {
		out.Root = &pb.Root{Path: s.Root.Path, Readonly: s.Root.Readonly}
	}
	for _, m := range s.Mounts {
		out.Mounts = append(out.Mounts, &pb.Mount{Destination: m.Destination, Source: m.Source, Type: m.Type, Options: m.Options})
	}
	if s.Hooks != nil {
		out.Hooks = &pb.Hooks{
			Prestart:  hooks(s.Hooks.Prestart),
			Poststart: hooks(s.Hooks.Poststart),
			Poststop:  hooks(s.Hooks.Poststop),
		}
	}
	if s.Linux != nil {
		out.Linux = linuxToProto(s.Linux)
	}
	return out
}

func hooks(hs []specs.Hook) []*pb.Hook {
	var out []*pb.Hook
	for _, h := range hs {
		ph := &pb.Hook{Path: h.Path, Args: h.Args, Env: h.Env}
		if h.Timeout != nil {
			ph.Timeout = int64(*h.Timeout)
		}
		out = append(out, ph)
	}
	return out
}

// ProcessToProto converts an OCI process.
func ProcessToProto(p *specs.Process) *pb.Process {
	if p == nil {
		return nil
	}
	out := &pb.Process{
		Terminal:        p.Terminal,
		User:            &pb.User{UID: p.User.UID, GID: p.User.GID, AdditionalGids: p.User.AdditionalGids, Username: p.User.Username},
		Args:            p.Args,
		Env:             p.Env,
		Cwd:             p.Cwd,
		NoNewPrivileges: p.NoNewPrivileges,
		ApparmorProfile: p.ApparmorProfile,
		SelinuxLabel:    p.SelinuxLabel,
	}
	if p.ConsoleSize != nil {
		out.ConsoleSize = &pb.Box{Height: uint32(p.ConsoleSize.Height), Width: uint32(p.ConsoleSize.Width)}
	}
	if c := p.Capabilities; c != nil {
		out.Capabilities = &pb.LinuxCapabilities{Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable, Permitted: c.Permitted, Ambient: c.Ambient}
	}
	for _, r := range p.Rlimits {
		out.Rlimits = append(out.Rlimits, &pb.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	if p.OOMScoreAdj != nil {
		out.OOMScoreAdj = int64(*p.OOMScoreAdj)
	}
	return out
}

func linuxToProto(l *specs.Linux) *pb.Linux {
	out := &pb.Linux{
		Sysctl:            l.Sysctl,
		Resources:         ResourcesToProto(l.Resources),
		CgroupsPath:       l.CgroupsPath,
		RootfsPropagation: l.RootfsPropagation,
		MaskedPaths:       l.MaskedPaths,
		ReadonlyPaths:     l.ReadonlyPaths,
		MountLabel:        l.MountLabel,
	}
	for _, m := range l.UIDMappings {
		out.UIDMappings = append(out.UIDMappings, &pb.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Size})
	}
	for _, m := range l.GIDMappings {
		out.GIDMappings = append(out.GIDMappings, &pb.LinuxIDMapping{HostID: m.HostID, ContainerID: m.ContainerID, Size: m.Size})
	}
	for _, n := range l.Namespaces {
		out.Namespaces = append(out.Namespaces, &pb.LinuxNamespace{Type: string(n.Type), Path: n.Path})
	}
	for _, d := range l.Devices {
		pd := &pb.LinuxDevice{Path: d.Path, Type: d.Type, Major: d.Major, Minor: d.Minor}
		if d.FileMode != nil {
			pd.FileMode = uint32(*d.FileMode)
		}
		if d.UID != nil {
			pd.UID = *d.UID
		}
		if d.GID != nil {
			pd.GID = *d.GID
		}
		out.Devices = append(out.Devices, pd)
	}
	if s := l.Seccomp; s != nil {
		ps := &pb.LinuxSeccomp{DefaultAction: string(s.DefaultAction)}
		for _, a := range s.Architectures {
			ps.Architectures = append(ps.Architectures, string(a))
		}
		for _, f := range s.Flags {
			ps.Flags = append(ps.Flags, string(f))
		}
		for _, sc := range s.Syscalls {
			psc := &pb.LinuxSyscall{Names: sc.Names, Action: string(sc.Action)}
			if sc.ErrnoRet != nil {
				psc.ErrnoRet = &pb.LinuxSyscall_Errnoret{Errnoret: uint32(*sc.ErrnoRet)}
			}
			for _, a := range sc.Args {
				psc.Args = append(psc.Args, &pb.LinuxSeccompArg{Index: uint64(a.Index), Value: a.Value, ValueTwo: a.ValueTwo, Op: string(a.Op)})
			}
			ps.Syscalls = append(ps.Syscalls, psc)
		}
		out.Seccomp = ps
	}
	if l.IntelRdt != nil {
		out.IntelRdt = &pb.LinuxIntelRdt{L3CacheSchema: l.IntelRdt.L3CacheSchema}
	}
	return out
}

// ResourcesToProto converts cgroup resources.
func ResourcesToProto(r *specs.LinuxResources) *pb.LinuxResources {
	if r == nil {
		return nil
	}
	out := &pb.LinuxResources{}
	for _, d := range r.Devices {
		if d.Major != nil && d.Minor != nil && *d.Major == 0 && *d.Minor == 0 {
			// Device 0:0 is no device: the rule matches nothing, and
			// the agent reads 0:0 as any device (a zero message).
			continue
		}
		pd := &pb.LinuxDeviceCgroup{Allow: d.Allow, Type: d.Type, Access: d.Access, Major: -1, Minor: -1}
		if d.Major != nil {
			pd.Major = *d.Major
		}
		if d.Minor != nil {
			pd.Minor = *d.Minor
		}
		out.Devices = append(out.Devices, pd)
	}
	if m := r.Memory; m != nil {
		pm := &pb.LinuxMemory{}
		setI64(&pm.Limit, m.Limit)
		setI64(&pm.Reservation, m.Reservation)
		setI64(&pm.Swap, m.Swap)
		// Kernel and KernelTCP are not carried: the OCI spec deprecates
		// them and libcontainer ignores them.
		if m.Swappiness != nil {
			pm.Swappiness = *m.Swappiness
		}
		if m.DisableOOMKiller != nil {
			pm.DisableOOMKiller = *m.DisableOOMKiller
		}
		out.Memory = pm
	}
	if c := r.CPU; c != nil {
		pc := &pb.LinuxCPU{Cpus: c.Cpus, Mems: c.Mems}
		setU64(&pc.Shares, c.Shares)
		setI64(&pc.Quota, c.Quota)
		setU64(&pc.Period, c.Period)
		setI64(&pc.RealtimeRuntime, c.RealtimeRuntime)
		setU64(&pc.RealtimePeriod, c.RealtimePeriod)
		out.CPU = pc
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		out.Pids = &pb.LinuxPids{Limit: *r.Pids.Limit}
	}
	if b := r.BlockIO; b != nil {
		pb_ := &pb.LinuxBlockIO{}
		if b.Weight != nil {
			pb_.Weight = uint32(*b.Weight)
		}
		if b.LeafWeight != nil {
			pb_.LeafWeight = uint32(*b.LeafWeight)
		}
		for _, w := range b.WeightDevice {
			pw := &pb.LinuxWeightDevice{Major: w.Major, Minor: w.Minor}
			if w.Weight != nil {
				pw.Weight = uint32(*w.Weight)
			}
			if w.LeafWeight != nil {
				pw.LeafWeight = uint32(*w.LeafWeight)
			}
			pb_.WeightDevice = append(pb_.WeightDevice, pw)
		}
		pb_.ThrottleReadBpsDevice = throttle(b.ThrottleReadBpsDevice)
		pb_.ThrottleWriteBpsDevice = throttle(b.ThrottleWriteBpsDevice)
		pb_.ThrottleReadIOPSDevice = throttle(b.ThrottleReadIOPSDevice)
		pb_.ThrottleWriteIOPSDevice = throttle(b.ThrottleWriteIOPSDevice)
		out.BlockIO = pb_
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &pb.LinuxHugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	if n := r.Network; n != nil {
		pn := &pb.LinuxNetwork{}
		if n.ClassID != nil {
			pn.ClassID = *n.ClassID
		}
		for _, p := range n.Priorities {
			pn.Priorities = append(pn.Priorities, &pb.LinuxInterfacePriority{Name: p.Name, Priority: p.Priority})
		}
		out.Network = pn
	}
	return out
}

func throttle(ts []specs.LinuxThrottleDevice) []*pb.LinuxThrottleDevice {
	var out []*pb.LinuxThrottleDevice
	for _, t := range ts {
		out = append(out, &pb.LinuxThrottleDevice{Major: t.Major, Minor: t.Minor, Rate: t.Rate})
	}
	return out
}

func setI64(dst *int64, v *int64) {
	if v != nil {
		*dst = *v
	}
}

func setU64(dst *uint64, v *uint64) {
	if v != nil {
		*dst = *v
	}
}
