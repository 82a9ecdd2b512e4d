package oci

import (
	"os"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

// fullSpec sets every field the agent protocol carries, with values that
// are not zero (a zero number means "not set" on the wire).
func fullSpec() *specs.Spec {
	return &specs.Spec{
		Version:     specs.Version,
		Hostname:    "pod",
		Annotations: map[string]string{"a": "b"},
		Root:        &specs.Root{Path: "/rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Source: "proc", Type: "proc", Options: []string{"nosuid"}},
			{Destination: "/data", Source: "/host/data", Type: "bind", Options: []string{"rbind", "rro"}},
		},
		Process: &specs.Process{
			Terminal:        true,
			ConsoleSize:     &specs.Box{Height: 24, Width: 80},
			User:            specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}, Username: "u"},
			Args:            []string{"sh", "-c", "true"},
			Env:             []string{"PATH=/bin", "A=b"},
			Cwd:             "/work",
			NoNewPrivileges: true,
			ApparmorProfile: "prof",
			SelinuxLabel:    "label",
			OOMScoreAdj:     ptr(-500),
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_KILL"}, Effective: []string{"CAP_CHOWN"}, Inheritable: []string{"CAP_NET_RAW"},
				Permitted: []string{"CAP_KILL", "CAP_CHOWN"}, Ambient: []string{"CAP_SYS_TIME"},
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 512}},
		},
		Linux: &specs.Linux{
			UIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
			Sysctl:            map[string]string{"net.ipv4.ip_forward": "1"},
			CgroupsPath:       "/vc/c",
			RootfsPropagation: "rslave",
			MaskedPaths:       []string{"/proc/kcore"},
			ReadonlyPaths:     []string{"/proc/sys"},
			MountLabel:        "mlabel",
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace, Path: "vc:sandbox"}, {Type: specs.MountNamespace},
			},
			Devices: []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: ptr(os.FileMode(0o666)), UID: ptr(uint32(1)), GID: ptr(uint32(2))}},
			Seccomp: &specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno,
				Architectures: []specs.Arch{specs.ArchX86_64},
				Flags:         []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
				Syscalls: []specs.LinuxSyscall{{
					Names: []string{"read", "write"}, Action: specs.ActAllow, ErrnoRet: ptr(uint(1)),
					Args: []specs.LinuxSeccompArg{{Index: 1, Value: 2, ValueTwo: 3, Op: specs.OpEqualTo}},
				}},
			},
			IntelRdt: &specs.LinuxIntelRdt{L3CacheSchema: "L3:0=f"},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{
					{Allow: false, Access: "rwm"},
					{Allow: true, Type: "c", Major: ptr(int64(1)), Minor: ptr(int64(3)), Access: "rwm"},
					{Allow: true, Type: "c", Major: ptr(int64(136)), Access: "rwm"},
				},
				Memory: &specs.LinuxMemory{
					Limit: ptr(int64(1 << 30)), Reservation: ptr(int64(1 << 29)), Swap: ptr(int64(2 << 30)),
					Swappiness:       ptr(uint64(10)),
					DisableOOMKiller: ptr(true),
				},
				CPU: &specs.LinuxCPU{
					Shares: ptr(uint64(512)), Quota: ptr(int64(50000)), Period: ptr(uint64(100000)),
					RealtimeRuntime: ptr(int64(950)), RealtimePeriod: ptr(uint64(1000)), Cpus: "0-1", Mems: "0",
				},
				Pids: &specs.LinuxPids{Limit: ptr(int64(100))},
				BlockIO: &specs.LinuxBlockIO{
					Weight: ptr(uint16(500)), LeafWeight: ptr(uint16(300)),
					WeightDevice: []specs.LinuxWeightDevice{{
						LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0},
						Weight:             ptr(uint16(200)), LeafWeight: ptr(uint16(100)),
					}},
					ThrottleReadBpsDevice:   []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1000}},
					ThrottleWriteBpsDevice:  []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 1}, Rate: 2000}},
					ThrottleReadIOPSDevice:  []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 2}, Rate: 30}},
					ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 3}, Rate: 40}},
				},
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}},
				Network: &specs.LinuxNetwork{
					ClassID:    ptr(uint32(7)),
					Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 5}},
				},
			},
		},
	}
}

// What the host encodes, the agent decodes to the same spec, field for
// field. Not carried: hooks (they name host paths, and the host runs
// them) and the deprecated kernel memory limits (libcontainer ignores
// them).
func TestRoundTrip(t *testing.T) {
	in := fullSpec()
	out := FromProto(ToProto(in))
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip changed the spec:\n in  %+v\n out %+v", in, out)
		diffFields(t, "", reflect.ValueOf(in).Elem(), reflect.ValueOf(out).Elem())
	}
	withHooks := fullSpec()
	withHooks.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/hook"}}}
	withHooks.Linux.Resources.Memory.Kernel = ptr(int64(1 << 20))
	if got := FromProto(ToProto(withHooks)); got.Hooks != nil || got.Linux.Resources.Memory.Kernel != nil {
		t.Errorf("hooks or kernel memory reached the guest: %+v %+v", got.Hooks, got.Linux.Resources.Memory)
	}
	// A process alone and resources alone (exec and update) too.
	if p := ProcessFromProto(ProcessToProto(in.Process)); !reflect.DeepEqual(p, in.Process) {
		t.Errorf("process round trip: %+v, want %+v", p, in.Process)
	}
	if r := ResourcesFromProto(ResourcesToProto(in.Linux.Resources)); !reflect.DeepEqual(r, in.Linux.Resources) {
		t.Errorf("resources round trip: %+v, want %+v", r, in.Linux.Resources)
	}
	if ToProto(nil) != nil || ProcessToProto(nil) != nil || ResourcesToProto(nil) != nil {
		t.Error("nil did not encode as nil")
	}
}

// diffFields names the fields that differ, to make a failure readable.
func diffFields(t *testing.T, path string, a, b reflect.Value) {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return
	}
	switch a.Kind() {
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			diffFields(t, path+"."+a.Type().Field(i).Name, a.Field(i), b.Field(i))
		}
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			t.Errorf("%s: %v vs %v", path, a, b)
			return
		}
		diffFields(t, path, a.Elem(), b.Elem())
	default:
		t.Errorf("%s: %#v vs %#v", path, a.Interface(), b.Interface())
	}
}
