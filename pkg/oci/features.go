package oci

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Features are the OCI runtime features of a container in a vc VM: the
// guest agent builds it with runc's libcontainer (v1.4.3), so its mount
// options, namespaces, capabilities and seccomp are runc's, less what the
// VM cannot give:
//
//   - no user namespaces and no idmapped mounts: the agent does not set
//     them up over the VM's shared directories, and CRI turns user
//     namespaces on only when both are announced;
//   - no hooks: they name host binaries, which the guest does not have
//     (the agent drops them);
//   - no AppArmor, SELinux or Intel RDT in the guest kernel;
//   - cgroup v2 only, no systemd (the agent is PID 1 of the guest).
//
// Recursive read-only bind mounts (rro and the other recursive options)
// are libcontainer's mount_setattr, which the guest kernel has.
func Features() *features.Features {
	t, f := true, false
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{},
		MountOptions: []string{
			"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
			"exec", "iversion", "lazytime", "loud", "mand", "noatime", "nodev",
			"nodiratime", "noexec", "noiversion", "nolazytime", "nomand",
			"norelatime", "nostrictatime", "nosuid", "nosymfollow", "private",
			"ratime", "rbind", "rdev", "rdiratime", "relatime", "remount",
			"rexec", "rnoatime", "rnodev", "rnodiratime", "rnoexec",
			"rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro",
			"rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave",
			"rstrictatime", "rsuid", "rsymfollow", "runbindable", "rw",
			"shared", "silent", "slave", "strictatime", "suid", "symfollow",
			"sync", "tmpcopyup", "unbindable",
		},
		Linux: &features.Linux{
			Namespaces: []string{
				string(specs.CgroupNamespace), string(specs.IPCNamespace),
				string(specs.MountNamespace), string(specs.NetworkNamespace),
				string(specs.PIDNamespace), string(specs.TimeNamespace),
				string(specs.UTSNamespace),
			},
			Capabilities: []string{
				"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
				"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
				"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
				"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
				"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
				"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
				"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
				"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
				"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
				"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
				"CAP_CHECKPOINT_RESTORE",
			},
			Cgroup: &features.Cgroup{V1: &f, V2: &t, Systemd: &f, SystemdUser: &f, Rdma: &f},
			Seccomp: &features.Seccomp{
				Enabled: &t,
				Actions: []string{
					"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
					"SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
					"SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
				},
				Operators: []string{
					"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
					"SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
				},
				Archs:          []string{"SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32"},
				KnownFlags:     []string{"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"},
				SupportedFlags: []string{"SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_LOG"},
			},
			Apparmor:        &features.Apparmor{Enabled: &f},
			Selinux:         &features.Selinux{Enabled: &f},
			IntelRdt:        &features.IntelRdt{Enabled: &f},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &f}},
			NetDevices:      &features.NetDevices{Enabled: &f},
		},
		Annotations: map[string]string{
			"org.opencontainers.runc.version": "1.4.3",
		},
	}
}
