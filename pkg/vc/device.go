package vc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/cleanup"
	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// Device passthrough. A block device of a container's spec
// (Linux.Devices, type "b": what `docker run --device`, podman and a
// Kubernetes volumeDevices entry put there) names a HOST device by its
// major:minor, which means nothing in the guest. The host device is
// hotplugged into the VM as a virtio-blk disk whose serial names it, and
// the agent finds the disk by that serial (pb.Device type "blk", id the
// serial), makes the node at the container path with the guest's
// major:minor and moves the device cgroup rules naming the host's numbers
// to the guest's. The containers of a sandbox passing one device share
// its disk, which goes when the last of them is deleted.
//
// Char devices cannot be passed: QEMU has no generic char device
// passthrough. Those the guest kernel has of its own (null, zero, full,
// random, urandom, tty, console, ptmx, ptys, fuse, net/tun) are the
// guest's, as a container on the host gets the host's; any other is
// refused, naming it.

// BlockDeviceType is the pb.Device type of a hotplugged virtio-blk disk:
// its id is the disk's serial (or, as Kata sends it, its PCI path).
const BlockDeviceType = "blk"

// guestCharDevice tells whether the guest kernel has a char device of
// these numbers of its own, the same as the host's.
func guestCharDevice(major, minor int64) bool {
	switch major {
	case 1: // mem: null, zero, full, random, urandom, kmsg
		return true
	case 4, 5, 136, 137, 138, 139, 140, 141, 142, 143: // ttys, console, ptmx, ptys
		return true
	case 10:
		return minor == 200 || minor == 229 || minor == 183 // net/tun, fuse, hwrng
	}
	return false
}

// hostBlockDevice finds the host block device of a spec entry: by its
// major:minor (/sys/dev/block/MAJ:MIN/uevent's DEVNAME), else by its path
// when that is a block device on the host.
func hostBlockDevice(sysfs string, d specs.LinuxDevice) (string, error) {
	if d.Major != 0 || d.Minor != 0 {
		name, err := ueventDevName(filepath.Join(sysfs, "dev", "block", fmt.Sprintf("%d:%d", d.Major, d.Minor), "uevent"))
		if err == nil {
			return filepath.Join("/dev", name), nil
		}
		if !os.IsNotExist(err) {
			return "", err
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(d.Path, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
		if (d.Major == 0 && d.Minor == 0) || (int64(unix.Major(st.Rdev)) == d.Major && int64(unix.Minor(st.Rdev)) == d.Minor) {
			return d.Path, nil
		}
	}
	return "", fmt.Errorf("block device %s (%d:%d): no such block device on the host: %w", d.Path, d.Major, d.Minor, errdefs.ErrNotFound)
}

func ueventDevName(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok && name != "" && !strings.Contains(name, "..") {
			return name, nil
		}
	}
	return "", fmt.Errorf("%s: no DEVNAME: %w", path, errdefs.ErrNotFound)
}

// allDevicesAllowed tells whether the spec's device cgroup rules allow
// every device: a privileged container's.
func allDevicesAllowed(r *specs.LinuxResources) bool {
	if r == nil {
		return false
	}
	all := false
	for _, rule := range r.Devices {
		if (rule.Type == "" || rule.Type == "a") && rule.Major == nil && rule.Minor == nil {
			all = rule.Allow && strings.Contains(rule.Access, "r") && strings.Contains(rule.Access, "w")
		}
	}
	return all
}

// hostBlockInUse says why the host's block device major:minor is in use
// on the host (mounted, a partition of it mounted, or a device such as
// device-mapper's built on it), or "" when it is not.
func hostBlockInUse(sysfs string, mounts []mountinfo.Info, major, minor int64) string {
	dir := filepath.Join(sysfs, "dev", "block", fmt.Sprintf("%d:%d", major, minor))
	nums := map[string]string{fmt.Sprintf("%d:%d", major, minor): ""}
	parts, _ := filepath.Glob(filepath.Join(dir, "*", "partition"))
	for _, p := range parts {
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(p), "dev")); err == nil {
			nums[strings.TrimSpace(string(b))] = filepath.Base(filepath.Dir(p))
		}
	}
	for _, m := range mounts {
		if part, ok := nums[fmt.Sprintf("%d:%d", m.Major, m.Minor)]; ok {
			if part != "" {
				return fmt.Sprintf("has partition %s mounted on %s", part, m.MountPoint)
			}
			return "is mounted on " + m.MountPoint
		}
	}
	holders, _ := filepath.Glob(filepath.Join(dir, "holders", "*"))
	for _, p := range parts {
		h, _ := filepath.Glob(filepath.Join(filepath.Dir(p), "holders", "*"))
		holders = append(holders, h...)
	}
	if len(holders) > 0 {
		return "is held by " + filepath.Base(holders[0])
	}
	return ""
}

// deviceReadOnly tells whether the spec's device cgroup rules allow the
// device to be read but not written: the last rule naming it (as the
// kernel applies them in order) decides; without one it is writable (the
// spec put it there to be used).
func deviceReadOnly(r *specs.LinuxResources, d specs.LinuxDevice) bool {
	if r == nil {
		return false
	}
	ro := false
	for _, rule := range r.Devices {
		if !rule.Allow || (rule.Type != "" && rule.Type != "a" && rule.Type != "b") {
			continue
		}
		if rule.Major == nil || rule.Minor == nil || *rule.Major != d.Major || *rule.Minor != d.Minor {
			continue
		}
		ro = !strings.Contains(rule.Access, "w")
	}
	return ro
}

// diskID names the disk of a host block device: the containers of a
// sandbox passing the same device share one disk (QEMU cannot open a
// device twice for writing), a read-only one apart. It is short enough to
// be the serial (20 bytes).
func diskID(major, minor int64, ro bool) string {
	id := fmt.Sprintf("blk%d-%d", major, minor)
	if ro {
		id += "-ro"
	}
	return id
}

// plugDevices hotplugs the block devices of spec into the VM and returns
// the pb.Devices the agent resolves and the ids of the container's disks
// (a disk another container of the sandbox already passes is shared). It
// refuses a char device the guest does not have. On error nothing it
// added stays plugged.
func (s *Sandbox) plugDevices(ctx context.Context, cid string, spec *specs.Spec) (_ []*pb.Device, disks []string, err error) {
	if spec.Linux == nil || len(spec.Linux.Devices) == 0 {
		return nil, nil, nil
	}
	if allDevicesAllowed(spec.Linux.Resources) {
		// A privileged container (containerd's and podman's put every
		// host device in its spec) gets the guest's devices, not the
		// host's: as containerd's privileged_without_host_devices.
		kept := slices.DeleteFunc(slices.Clone(spec.Linux.Devices), func(d specs.LinuxDevice) bool {
			return d.Type == "b" || ((d.Type == "c" || d.Type == "u") && !guestCharDevice(d.Major, d.Minor))
		})
		if n := len(spec.Linux.Devices) - len(kept); n > 0 {
			s.log.Info("privileged container: the host's devices are not passed into the VM", "container", cid, "dropped", n)
		}
		spec.Linux.Devices = kept
	}
	var mounts []mountinfo.Info
	var plug []hypervisor.Disk
	var devs []*pb.Device
	for i, d := range spec.Linux.Devices {
		field := fmt.Sprintf("container %s: Linux.Devices[%d] %s", cid, i, d.Path)
		switch d.Type {
		case "b":
		case "c", "u":
			if !guestCharDevice(d.Major, d.Minor) {
				return nil, nil, fmt.Errorf("%s: char device %d:%d cannot be passed into the VM (only block devices are, as virtio-blk disks; the guest has its own null, zero, full, random, urandom, tty, console, ptmx, fuse and net/tun): %w",
					field, d.Major, d.Minor, errdefs.ErrNotImplemented)
			}
			continue
		case "p":
			continue // a FIFO is made in the guest
		default:
			return nil, nil, fmt.Errorf("%s: device type %q: %w", field, d.Type, errdefs.ErrInvalidArgument)
		}
		if !filepath.IsAbs(d.Path) {
			return nil, nil, fmt.Errorf("%s: path is not absolute: %w", field, errdefs.ErrInvalidArgument)
		}
		host, err := hostBlockDevice("/sys", d)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", field, err)
		}
		if mounts == nil {
			if mounts, err = mountinfo.Read(mountinfo.Thread); err != nil {
				return nil, nil, err
			}
		}
		if why := hostBlockInUse("/sys", mounts, d.Major, d.Minor); why != "" {
			return nil, nil, fmt.Errorf("%s: host device %s %s: a VM must not write it beside the host: %w", field, host, why, errdefs.ErrFailedPrecondition)
		}
		ro := deviceReadOnly(spec.Linux.Resources, d)
		id := diskID(d.Major, d.Minor, ro)
		plug = append(plug, hypervisor.Disk{ID: id, Path: host, Serial: id, ReadOnly: ro})
		dev := &pb.Device{Id: id, Type: BlockDeviceType, ContainerPath: d.Path}
		if ro {
			dev.Options = []string{"ro"}
		}
		devs = append(devs, dev)
	}
	if len(plug) == 0 {
		return nil, nil, nil
	}
	vm, release, err := s.liveVM(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	cu := cleanup.Make(func() {})
	defer cu.Clean()
	for _, d := range plug {
		if slices.Contains(disks, d.ID) {
			continue
		}
		err := vm.AddDisk(ctx, d)
		switch {
		case errdefs.IsAlreadyExists(err):
			s.log.Info("block device shared", "container", cid, "host", d.Path, "disk", d.ID)
		case err != nil:
			return nil, nil, fmt.Errorf("container %s: pass block device %s: %w", cid, d.Path, err)
		default:
			cu.Add(func() { s.unplugDisk(context.WithoutCancel(ctx), vm, d.ID) })
			s.log.Info("block device passed", "container", cid, "host", d.Path, "disk", d.ID, "read_only", d.ReadOnly)
		}
		disks = append(disks, d.ID)
	}
	cu.Release()
	return devs, disks, nil
}

func (s *Sandbox) unplugDisk(ctx context.Context, vm hypervisor.Hypervisor, id string) error {
	if err := hypervisor.RemoveDisk(ctx, vm, id); err != nil && !errdefs.IsNotFound(err) {
		s.log.Error("unplug a container's block device", "disk", id, "err", err)
		return err
	}
	return nil
}

// unplugDevices removes from the VM the disks of a deleted container (or
// one whose create failed) that no other container of the sandbox passes.
// It runs under the sandbox's lock.
func (s *Sandbox) unplugDevices(ctx context.Context, cid string, disks []string) error {
	if len(disks) == 0 || s.running() != nil {
		return nil // a stopped VM took its disks with it
	}
	others, err := s.loadContainers()
	if err != nil {
		return fmt.Errorf("container %s: unplug block devices: %w", cid, err)
	}
	vm, release, err := s.liveVM(ctx)
	if err != nil {
		return err
	}
	defer release()
	var first error
	for _, id := range disks {
		if slices.ContainsFunc(others, func(c *ContainerStatus) bool { return c.ID != cid && slices.Contains(c.Disks, id) }) {
			continue
		}
		if err := s.unplugDisk(ctx, vm, id); err != nil && first == nil {
			first = fmt.Errorf("container %s: unplug block device %s: %w", cid, id, err)
		}
	}
	return first
}

// AddDevice, a device for the sandbox outside a container's spec, is not
// implemented: pass a block device in the container's spec
// (ContainerConfig.Spec.Linux.Devices), which CreateContainer hotplugs.
func (s *Sandbox) AddDevice(ctx context.Context) error {
	return fmt.Errorf("AddDevice: a sandbox-wide device is not supported, pass block devices in the container's spec (Linux.Devices): %w", errdefs.ErrNotImplemented)
}
