package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/boot"
)

// DefaultCgroupParent is where containers' cgroups go when the spec names
// none: DefaultCgroupParent/<container id>.
const DefaultCgroupParent = "/vc"

// invalid returns an InvalidArgument error naming the field.
func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// prepared is a spec made ready for libcontainer.
type prepared struct {
	spec *specs.Spec
	// netSysctls are the spec's net.* sysctls of a container that shares
	// the agent's network namespace: they are the sandbox's, set by the
	// agent itself (libcontainer refuses them there).
	netSysctls map[string]string
	// privatePidns: the container has a PID namespace of its own, so the
	// kernel kills its processes when its init exits.
	privatePidns bool
	// privateNetns: the container has a network namespace of its own.
	privateNetns bool
}

// prepareSpec checks the spec and adapts it to the guest: cgroups path
// default, network namespace sharing, the sandbox PID namespace, a cgroup
// namespace on cgroup v2, /sys for a user namespace. sandboxPidns is the
// path of the sandbox's PID namespace, or "" to keep the spec's; cgroup2
// tells whether the guest runs cgroup v2.
func prepareSpec(id string, s *specs.Spec, sandboxPidns string, cgroup2 bool) (*prepared, error) {
	if s.Process == nil {
		return nil, invalid("OCI.Process", "missing")
	}
	if len(s.Process.Args) == 0 || s.Process.Args[0] == "" {
		return nil, invalid("OCI.Process.Args", "empty")
	}
	if s.Root == nil || s.Root.Path == "" {
		return nil, invalid("OCI.Root.Path", "missing")
	}
	if !filepath.IsAbs(s.Root.Path) {
		return nil, invalid("OCI.Root.Path", "%q is not an absolute guest path", s.Root.Path)
	}
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	} else if !filepath.IsAbs(s.Process.Cwd) {
		return nil, invalid("OCI.Process.Cwd", "%q is not absolute", s.Process.Cwd)
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	if s.Linux.CgroupsPath == "" {
		s.Linux.CgroupsPath = DefaultCgroupParent + "/" + id
	}
	s.Hooks = nil

	p := &prepared{spec: s}
	var nss []specs.LinuxNamespace
	hasPid, hasCgroup := false, false
	for _, ns := range s.Linux.Namespaces {
		switch ns.Type {
		case specs.CgroupNamespace:
			hasCgroup = true
		case specs.NetworkNamespace:
			// Without a path the container shares the sandbox's (the
			// agent's) network, as in Kata: the VM is the pod.
			if ns.Path == "" {
				continue
			}
			p.privateNetns = true
		case specs.PIDNamespace:
			hasPid = true
			if sandboxPidns != "" {
				ns.Path = sandboxPidns
			}
			p.privatePidns = ns.Path == ""
		}
		nss = append(nss, ns)
	}
	if !hasPid && sandboxPidns != "" {
		nss = append(nss, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: sandboxPidns})
	}
	// A spec without a cgroup namespace asks for the runtime's, which in
	// a VM is the agent's: the guest's whole tree, where the container's
	// limits sit at /vc/<id>, which nothing in it looks for. Spec
	// generators decide from the cgroup version of the host they run on
	// (containerd's CRI, docker and podman on a cgroup v1 host add none),
	// not the guest's; on cgroup v2 runc's users get a private one, so
	// the container sees its own cgroup, and its limits, at the root of
	// the cgroup2 mount it makes (a "cgroup" mount) and "0::/" in
	// /proc/self/cgroup.
	if !hasCgroup && cgroup2 {
		nss = append(nss, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	s.Linux.Namespaces = nss

	if hasUserns(s) && !p.privateNetns {
		bindSysForUserns(s)
	}
	if !p.privateNetns {
		for k, v := range s.Linux.Sysctl {
			if strings.HasPrefix(strings.ReplaceAll(k, "/", "."), "net.") {
				if p.netSysctls == nil {
					p.netSysctls = map[string]string{}
				}
				p.netSysctls[k] = v
				delete(s.Linux.Sysctl, k)
			}
		}
	}
	return p, nil
}

// applyNetSysctls sets sysctls in the agent's network namespace.
func applyNetSysctls(m map[string]string) error {
	for k, v := range m {
		key := strings.ReplaceAll(k, ".", "/")
		if strings.Contains(key, "..") || strings.HasPrefix(key, "/") {
			return invalid("OCI.Linux.Sysctl", "bad key %q", k)
		}
		path := filepath.Join("/proc/sys", key)
		if cur, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(cur)) == strings.TrimSpace(v) {
			continue
		}
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			return invalid("OCI.Linux.Sysctl", "%s=%s: %v", k, v, err)
		}
	}
	return nil
}

// newConfig turns a prepared spec into libcontainer's config.
func newConfig(id string, p *prepared, noPivot bool) (*configs.Config, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:  id,
		NoPivotRoot: noPivot,
		Spec:        p.spec,
	})
	if err != nil {
		return nil, invalid("OCI", "%v", err)
	}
	return cfg, nil
}

// resolveDevices points the spec's devices at the guest devices the host
// passed (pb.Device): vm_path is the guest node, container_path the path
// in the container. The device node may appear late (hotplug), so it is
// waited for a little.
func resolveDevices(ctx context.Context, s *specs.Spec, devs []*pb.Device) error {
	for i, d := range devs {
		if d == nil {
			continue
		}
		field := fmt.Sprintf("devices[%d]", i)
		if d.GetType() == deviceBlk && d.GetVmPath() == "" {
			node, err := blkDevice(ctx, "/sys", "/dev", d.GetId())
			if err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
			d = &pb.Device{Id: d.GetId(), Type: d.GetType(), VmPath: node, ContainerPath: d.GetContainerPath(), Options: d.GetOptions()}
		}
		if d.GetVmPath() == "" || !filepath.IsAbs(d.GetVmPath()) {
			return invalid(field+".vm_path", "%q is not an absolute path", d.GetVmPath())
		}
		if d.GetContainerPath() == "" || !filepath.IsAbs(d.GetContainerPath()) {
			return invalid(field+".container_path", "%q is not an absolute path", d.GetContainerPath())
		}
		st, err := waitDevice(ctx, d.GetVmPath(), 5*time.Second)
		if err != nil {
			return fmt.Errorf("%s.vm_path %q: %w", field, d.GetVmPath(), err)
		}
		typ := ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFBLK:
			typ = "b"
		case unix.S_IFCHR:
			typ = "c"
		default:
			return invalid(field+".vm_path", "%q is not a device node", d.GetVmPath())
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		found := false
		for j := range s.Linux.Devices {
			sd := &s.Linux.Devices[j]
			if sd.Path != d.GetContainerPath() {
				continue
			}
			found = true
			// Rules naming the host's numbers follow the device.
			if s.Linux.Resources != nil {
				for k := range s.Linux.Resources.Devices {
					r := &s.Linux.Resources.Devices[k]
					if r.Major != nil && r.Minor != nil && *r.Major == sd.Major && *r.Minor == sd.Minor {
						r.Major, r.Minor = &major, &minor
					}
				}
			}
			sd.Type, sd.Major, sd.Minor = typ, major, minor
		}
		if !found {
			mode := os.FileMode(0o666)
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: d.GetContainerPath(), Type: typ, Major: major, Minor: minor, FileMode: &mode})
			if s.Linux.Resources == nil {
				s.Linux.Resources = &specs.LinuxResources{}
			}
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: "rwm"})
		}
	}
	return nil
}

func waitDevice(ctx context.Context, path string, limit time.Duration) (*unix.Stat_t, error) {
	deadline := time.Now().Add(limit)
	for {
		var st unix.Stat_t
		err := unix.Stat(path, &st)
		if err == nil {
			return &st, nil
		}
		if err != unix.ENOENT || time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// resolveUser applies a user given by name or number (StringUser) to u,
// looking names up in the container's /etc/passwd and /etc/group.
func resolveUser(rootfs string, su *pb.StringUser, u *specs.User) error {
	if su == nil || (su.GetUid() == "" && su.GetGid() == "" && len(su.GetAdditionalGids()) == 0) {
		return nil
	}
	passwd, err := securejoin.SecureJoin(rootfs, "/etc/passwd")
	if err != nil {
		return err
	}
	group, err := securejoin.SecureJoin(rootfs, "/etc/group")
	if err != nil {
		return err
	}
	if su.GetUid() != "" || su.GetGid() != "" {
		spec := su.GetUid()
		if spec == "" {
			spec = strconv.FormatUint(uint64(u.UID), 10)
		}
		if su.GetGid() != "" {
			spec += ":" + su.GetGid()
		}
		eu, err := user.GetExecUserPath(spec, &user.ExecUser{Uid: int(u.UID), Gid: int(u.GID), Home: "/"}, passwd, group)
		if err != nil {
			return invalid("string_user", "%v", err)
		}
		u.UID, u.GID = uint32(eu.Uid), uint32(eu.Gid)
		for _, g := range eu.Sgids {
			u.AdditionalGids = appendGid(u.AdditionalGids, uint32(g))
		}
	}
	if len(su.GetAdditionalGids()) > 0 {
		gids, err := user.GetAdditionalGroupsPath(su.GetAdditionalGids(), group)
		if err != nil {
			return invalid("string_user.additionalGids", "%v", err)
		}
		for _, g := range gids {
			u.AdditionalGids = appendGid(u.AdditionalGids, uint32(g))
		}
	}
	return nil
}

func appendGid(gids []uint32, g uint32) []uint32 {
	for _, x := range gids {
		if x == g {
			return gids
		}
	}
	return append(gids, g)
}

var rlimits = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}

// newProcess makes libcontainer's process from an OCI process; field
// prefixes error messages.
func newProcess(field string, p *specs.Process, init bool) (*libcontainer.Process, error) {
	nnp := p.NoNewPrivileges
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		AppArmorProfile: p.ApparmorProfile,
		NoNewPrivileges: &nnp,
		Init:            init,
	}
	if lp.Cwd == "" {
		lp.Cwd = "/"
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(min(p.ConsoleSize.Width, 0xffff))
		lp.ConsoleHeight = uint16(min(p.ConsoleSize.Height, 0xffff))
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		t, ok := rlimits[r.Type]
		if !ok {
			return nil, invalid(field+".Rlimits", "unknown rlimit %q", r.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	return lp, nil
}

// rootIsRamfs reports whether / is the initramfs mount itself, where
// pivot_root(2) cannot work and containers must be entered with MS_MOVE +
// chroot. The agent moves off it at boot (boot.SwitchRoot), so this is
// only a fallback.
func rootIsRamfs() bool {
	return !boot.RootHasParent()
}
