package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/imagestore"
)

// allCapabilities are Linux's capabilities (5.9 and later), what
// --privileged and --cap-add ALL give.
var allCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// capName normalises a capability as docker takes it ("net_admin",
// "CAP_NET_ADMIN", "ALL").
func capName(flagName, c string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(c))
	if n == "ALL" {
		return n, nil
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(allCapabilities, n) {
		return "", fmt.Errorf("%s %q: unknown capability: %w", flagName, c, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// applyCapabilities adds and drops capabilities (added first, as docker
// does, so "--cap-drop ALL --cap-add X" leaves X).
func applyCapabilities(p *specs.Process, add, drop []string) error {
	set := append([]string(nil), p.Capabilities.Bounding...)
	for _, c := range drop {
		n, err := capName("--cap-drop", c)
		if err != nil {
			return err
		}
		if n == "ALL" {
			set = nil
			continue
		}
		set = slices.DeleteFunc(set, func(s string) bool { return s == n })
	}
	for _, c := range add {
		n, err := capName("--cap-add", c)
		if err != nil {
			return err
		}
		if n == "ALL" {
			set = append([]string(nil), allCapabilities...)
			continue
		}
		if !slices.Contains(set, n) {
			set = append(set, n)
		}
	}
	p.Capabilities = &specs.LinuxCapabilities{Bounding: set, Effective: set, Permitted: set}
	return nil
}

// privileged lifts what isolates a container from its (guest) kernel: all
// capabilities, no masked or read-only /proc paths, a writable /sys and
// /sys/fs/cgroup (as docker's), set-uid programs allowed. The guest's
// devices stay the VM's.
func privileged(spec *specs.Spec) {
	all := append([]string(nil), allCapabilities...)
	spec.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
	spec.Process.NoNewPrivileges = false
	spec.Linux.MaskedPaths, spec.Linux.ReadonlyPaths = nil, nil
	for i, m := range spec.Mounts {
		if m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup" {
			spec.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
		}
	}
}

// applyUser sets the process's user from -u (or the image's User, what
// field names): uid, uid:gid, name or name:group, names looked up in the
// image's /etc/passwd and /etc/group, the image being the stack of
// directories roots, top first (see imagestore.Lookup). A user without a
// group gets its passwd entry's group (0 for a bare uid the image does
// not know).
func applyUser(p *specs.Process, roots []string, user, field string) error {
	u, g, hasGroup := strings.Cut(user, ":")
	if u == "" || (hasGroup && g == "") {
		return fmt.Errorf("%s %q: want USER[:GROUP]: %w", field, user, errdefs.ErrInvalidArgument)
	}
	passwd, _ := readDB(roots, "etc/passwd")
	uid, gid := uint64(0), uint64(0)
	if n, err := strconv.ParseUint(u, 10, 32); err == nil {
		uid = n
		for _, e := range passwd {
			if e[2] == u {
				gid, _ = strconv.ParseUint(e[3], 10, 32)
			}
		}
	} else {
		found := false
		for _, e := range passwd {
			if e[0] == u {
				uid, _ = strconv.ParseUint(e[2], 10, 32)
				gid, _ = strconv.ParseUint(e[3], 10, 32)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s %q: no user %q in the image's /etc/passwd: %w", field, user, u, errdefs.ErrNotFound)
		}
	}
	if hasGroup {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			gid = n
		} else {
			groups, _ := readDB(roots, "etc/group")
			found := false
			for _, e := range groups {
				if e[0] == g {
					gid, _ = strconv.ParseUint(e[2], 10, 32)
					found = true
				}
			}
			if !found {
				return fmt.Errorf("%s %q: no group %q in the image's /etc/group: %w", field, user, g, errdefs.ErrNotFound)
			}
		}
	}
	p.User = specs.User{UID: uint32(uid), GID: uint32(gid)}
	return nil
}

// readDB reads a colon-separated database (/etc/passwd, /etc/group) of
// the image whose layers are roots: entries of at least four fields.
func readDB(roots []string, rel string) ([][]string, error) {
	path, ok := imagestore.Lookup(roots, rel)
	if !ok {
		return nil, os.ErrNotExist
	}
	// Not through a link: it would be followed on the host, out of an
	// image that may be anyone's.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fl := strings.Split(sc.Text(), ":"); len(fl) >= 4 {
			out = append(out, fl)
		}
	}
	return out, sc.Err()
}

// initBinary is the init --init runs: Debian's static tini (package tini),
// what docker runs as /sbin/docker-init.
var initBinary = "/usr/bin/tini-static"

// initPath is where the init appears in the container, as in docker's.
const initPath = "/sbin/docker-init"

// withInit makes tini the container's PID 1, the command its child: tini
// reaps orphans and passes signals on, which a command written to be a
// child does not do as PID 1. The host's static binary is bound read-only.
func withInit(spec *specs.Spec) error {
	if _, err := os.Stat(initBinary); err != nil {
		return fmt.Errorf("--init: %w (install Debian's tini package)", err)
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: initPath, Type: "bind", Source: initBinary, Options: []string{"bind", "ro"}})
	spec.Process.Args = append([]string{initPath, "--"}, spec.Process.Args...)
	return nil
}
