package oci

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
)

// The agent protocol's Spec mirrors the OCI runtime spec, but proto3 has
// no optional scalars: a zero number means "not set", as ToProto encodes
// it. Device cgroup rules use -1 for "any" major
// or minor (and 0:0, which names no device, is read as *:* too).

// FromProto converts the protocol's spec to an OCI runtime spec. It never
// fails; validation is libcontainer's. Hooks are dropped: they name host
// paths, meaningless in the guest.
func FromProto(p *pb.Spec) *specs.Spec {
	s := &specs.Spec{
		Version:     p.GetVersion(),
		Process:     ProcessFromProto(p.GetProcess()),
		Hostname:    p.GetHostname(),
		Annotations: copyMap(p.GetAnnotations()),
	}
	if s.Version == "" {
		s.Version = specs.Version
	}
	if r := p.GetRoot(); r != nil {
		s.Root = &specs.Root{Path: r.GetPath(), Readonly: r.GetReadonly()}
	}
	for _, m := range p.GetMounts() {
		if m == nil {
			continue
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: m.GetDestination(),
			Source:      m.GetSource(),
			Type:        m.GetType(),
			Options:     append([]string(nil), m.GetOptions()...),
		})
	}
	if l := p.GetLinux(); l != nil {
		s.Linux = toLinux(l)
	}
	return s
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ProcessFromProto converts a process; nil stays nil.
func ProcessFromProto(p *pb.Process) *specs.Process {
	if p == nil {
		return nil
	}
	oom := int(p.GetOOMScoreAdj())
	sp := &specs.Process{
		Terminal:        p.GetTerminal(),
		Args:            append([]string(nil), p.GetArgs()...),
		Env:             append([]string(nil), p.GetEnv()...),
		Cwd:             p.GetCwd(),
		NoNewPrivileges: p.GetNoNewPrivileges(),
		ApparmorProfile: p.GetApparmorProfile(),
		SelinuxLabel:    p.GetSelinuxLabel(),
		OOMScoreAdj:     &oom,
	}
	if b := p.GetConsoleSize(); b != nil {
		sp.ConsoleSize = &specs.Box{Height: uint(b.GetHeight()), Width: uint(b.GetWidth())}
	}
	if u := p.GetUser(); u != nil {
		sp.User = specs.User{
			UID:            u.GetUID(),
			GID:            u.GetGID(),
			AdditionalGids: append([]uint32(nil), u.GetAdditionalGids()...),
			Username:       u.GetUsername(),
		}
	}
	if c := p.GetCapabilities(); c != nil {
		sp.Capabilities = &specs.LinuxCapabilities{
			Bounding:    append([]string(nil), c.GetBounding()...),
			Effective:   append([]string(nil), c.GetEffective()...),
			Inheritable: append([]string(nil), c.GetInheritable()...),
			Permitted:   append([]string(nil), c.GetPermitted()...),
			Ambient:     append([]string(nil), c.GetAmbient()...),
		}
	}
	for _, r := range p.GetRlimits() {
		if r == nil {
			continue
		}
		sp.Rlimits = append(sp.Rlimits, specs.POSIXRlimit{Type: r.GetType(), Hard: r.GetHard(), Soft: r.GetSoft()})
	}
	return sp
}

func toLinux(l *pb.Linux) *specs.Linux {
	sl := &specs.Linux{
		Sysctl:            copyMap(l.GetSysctl()),
		Resources:         ResourcesFromProto(l.GetResources()),
		CgroupsPath:       l.GetCgroupsPath(),
		RootfsPropagation: l.GetRootfsPropagation(),
		MaskedPaths:       append([]string(nil), l.GetMaskedPaths()...),
		ReadonlyPaths:     append([]string(nil), l.GetReadonlyPaths()...),
		MountLabel:        l.GetMountLabel(),
		UIDMappings:       toIDMaps(l.GetUIDMappings()),
		GIDMappings:       toIDMaps(l.GetGIDMappings()),
	}
	for _, n := range l.GetNamespaces() {
		if n == nil {
			continue
		}
		sl.Namespaces = append(sl.Namespaces, specs.LinuxNamespace{Type: specs.LinuxNamespaceType(n.GetType()), Path: n.GetPath()})
	}
	for _, d := range l.GetDevices() {
		if d == nil {
			continue
		}
		sd := specs.LinuxDevice{Path: d.GetPath(), Type: d.GetType(), Major: d.GetMajor(), Minor: d.GetMinor()}
		if d.GetFileMode() != 0 {
			m := os.FileMode(d.GetFileMode())
			sd.FileMode = &m
		}
		uid, gid := d.GetUID(), d.GetGID()
		sd.UID, sd.GID = &uid, &gid
		sl.Devices = append(sl.Devices, sd)
	}
	if s := l.GetSeccomp(); s != nil {
		sl.Seccomp = toSeccomp(s)
	}
	if r := l.GetIntelRdt(); r != nil {
		sl.IntelRdt = &specs.LinuxIntelRdt{L3CacheSchema: r.GetL3CacheSchema()}
	}
	return sl
}

func toIDMaps(ms []*pb.LinuxIDMapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range ms {
		if m == nil {
			continue
		}
		out = append(out, specs.LinuxIDMapping{HostID: m.GetHostID(), ContainerID: m.GetContainerID(), Size: m.GetSize()})
	}
	return out
}

func toSeccomp(s *pb.LinuxSeccomp) *specs.LinuxSeccomp {
	out := &specs.LinuxSeccomp{DefaultAction: specs.LinuxSeccompAction(s.GetDefaultAction())}
	for _, a := range s.GetArchitectures() {
		out.Architectures = append(out.Architectures, specs.Arch(a))
	}
	for _, f := range s.GetFlags() {
		out.Flags = append(out.Flags, specs.LinuxSeccompFlag(f))
	}
	for _, sc := range s.GetSyscalls() {
		if sc == nil {
			continue
		}
		o := specs.LinuxSyscall{Names: append([]string(nil), sc.GetNames()...), Action: specs.LinuxSeccompAction(sc.GetAction())}
		if e, ok := sc.GetErrnoRet().(*pb.LinuxSyscall_Errnoret); ok {
			v := uint(e.Errnoret)
			o.ErrnoRet = &v
		}
		for _, a := range sc.GetArgs() {
			if a == nil {
				continue
			}
			o.Args = append(o.Args, specs.LinuxSeccompArg{
				Index: uint(a.GetIndex()), Value: a.GetValue(), ValueTwo: a.GetValueTwo(),
				Op: specs.LinuxSeccompOperator(a.GetOp()),
			})
		}
		out.Syscalls = append(out.Syscalls, o)
	}
	return out
}

func i64(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

func u64(v uint64) *uint64 {
	if v == 0 {
		return nil
	}
	return &v
}

func u16(v uint32) *uint16 {
	if v == 0 {
		return nil
	}
	w := uint16(min(v, 0xffff))
	return &w
}

// ResourcesFromProto converts cgroup resources; nil stays nil.
func ResourcesFromProto(r *pb.LinuxResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	for _, d := range r.GetDevices() {
		if d == nil {
			continue
		}
		rule := specs.LinuxDeviceCgroup{Allow: d.GetAllow(), Type: d.GetType(), Access: d.GetAccess()}
		major, minor := d.GetMajor(), d.GetMinor()
		if !(major == 0 && minor == 0) {
			if major >= 0 {
				rule.Major = &major
			}
			if minor >= 0 {
				rule.Minor = &minor
			}
		}
		out.Devices = append(out.Devices, rule)
	}
	if m := r.GetMemory(); m != nil {
		out.Memory = &specs.LinuxMemory{
			Limit:       i64(m.GetLimit()),
			Reservation: i64(m.GetReservation()),
			Swap:        i64(m.GetSwap()),
			Swappiness:  u64(m.GetSwappiness()),
		}
		if m.GetDisableOOMKiller() {
			t := true
			out.Memory.DisableOOMKiller = &t
		}
	}
	if c := r.GetCPU(); c != nil {
		out.CPU = &specs.LinuxCPU{
			Shares:          u64(c.GetShares()),
			Quota:           i64(c.GetQuota()),
			Period:          u64(c.GetPeriod()),
			RealtimeRuntime: i64(c.GetRealtimeRuntime()),
			RealtimePeriod:  u64(c.GetRealtimePeriod()),
			Cpus:            c.GetCpus(),
			Mems:            c.GetMems(),
		}
	}
	if p := r.GetPids(); p != nil && p.GetLimit() != 0 {
		out.Pids = &specs.LinuxPids{Limit: i64(p.GetLimit())}
	}
	if b := r.GetBlockIO(); b != nil {
		sb := &specs.LinuxBlockIO{Weight: u16(b.GetWeight()), LeafWeight: u16(b.GetLeafWeight())}
		for _, w := range b.GetWeightDevice() {
			if w == nil {
				continue
			}
			wd := specs.LinuxWeightDevice{Weight: u16(w.GetWeight()), LeafWeight: u16(w.GetLeafWeight())}
			wd.Major, wd.Minor = w.GetMajor(), w.GetMinor()
			sb.WeightDevice = append(sb.WeightDevice, wd)
		}
		sb.ThrottleReadBpsDevice = toThrottle(b.GetThrottleReadBpsDevice())
		sb.ThrottleWriteBpsDevice = toThrottle(b.GetThrottleWriteBpsDevice())
		sb.ThrottleReadIOPSDevice = toThrottle(b.GetThrottleReadIOPSDevice())
		sb.ThrottleWriteIOPSDevice = toThrottle(b.GetThrottleWriteIOPSDevice())
		out.BlockIO = sb
	}
	for _, h := range r.GetHugepageLimits() {
		if h == nil {
			continue
		}
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPagesize(), Limit: h.GetLimit()})
	}
	if n := r.GetNetwork(); n != nil {
		sn := &specs.LinuxNetwork{}
		if n.GetClassID() != 0 {
			id := n.GetClassID()
			sn.ClassID = &id
		}
		for _, p := range n.GetPriorities() {
			if p == nil {
				continue
			}
			sn.Priorities = append(sn.Priorities, specs.LinuxInterfacePriority{Name: p.GetName(), Priority: p.GetPriority()})
		}
		out.Network = sn
	}
	return out
}

func toThrottle(ts []*pb.LinuxThrottleDevice) []specs.LinuxThrottleDevice {
	var out []specs.LinuxThrottleDevice
	for _, t := range ts {
		if t == nil {
			continue
		}
		d := specs.LinuxThrottleDevice{Rate: t.GetRate()}
		d.Major, d.Minor = t.GetMajor(), t.GetMinor()
		out = append(out, d)
	}
	return out
}
