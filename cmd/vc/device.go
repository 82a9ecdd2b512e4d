package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// parseDevice reads docker's --device HOSTPATH[:CONTAINERPATH[:PERMS]]
// (PERMS of r, w, m; default rwm) into the spec's device and its cgroup
// rule. The host device's major:minor go in the spec; pkg/vc passes a
// block device into the VM as a disk and refuses a char device the guest
// does not have of its own.
func parseDevice(v string) (specs.LinuxDevice, specs.LinuxDeviceCgroup, error) {
	parts := strings.Split(v, ":")
	if len(parts) > 3 || parts[0] == "" {
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, fmt.Errorf("want HOSTPATH[:CONTAINERPATH[:PERMS]]: %w", errdefs.ErrInvalidArgument)
	}
	host, ctr, perms := parts[0], parts[0], "rwm"
	if len(parts) > 1 && parts[1] != "" {
		ctr = parts[1]
	}
	if len(parts) > 2 {
		perms = parts[2]
	}
	if perms == "" || strings.Trim(perms, "rwm") != "" {
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, fmt.Errorf("permissions %q: want some of r, w, m: %w", perms, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(host) || !filepath.IsAbs(ctr) {
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, fmt.Errorf("paths must be absolute: %w", errdefs.ErrInvalidArgument)
	}
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, fmt.Errorf("%s: %w", host, err)
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFCHR:
		typ = "c"
	default:
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, fmt.Errorf("%s is not a device: %w", host, errdefs.ErrInvalidArgument)
	}
	major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{Path: filepath.Clean(ctr), Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid},
		specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: perms}, nil
}

// withDevices adds --device's devices to spec.
func withDevices(spec *specs.Spec, devs []string) error {
	for i, v := range devs {
		d, rule, err := parseDevice(v)
		if err != nil {
			return fmt.Errorf("--device #%d %q: %w", i+1, v, err)
		}
		spec.Linux.Devices = append(spec.Linux.Devices, d)
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		spec.Linux.Resources.Devices = append(spec.Linux.Resources.Devices, rule)
	}
	return nil
}
