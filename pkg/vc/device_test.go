package vc

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/mountinfo"
)

func TestHostBlockDevice(t *testing.T) {
	sysfs := t.TempDir()
	dir := filepath.Join(sysfs, "dev", "block", "7:3")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "uevent"), []byte("MAJOR=7\nMINOR=3\nDEVNAME=loop3\nDEVTYPE=disk\n"), 0o644)
	if got, err := hostBlockDevice(sysfs, specs.LinuxDevice{Path: "/dev/xvda", Type: "b", Major: 7, Minor: 3}); err != nil || got != "/dev/loop3" {
		t.Fatalf("7:3: %q, %v; want /dev/loop3", got, err)
	}
	if _, err := hostBlockDevice(sysfs, specs.LinuxDevice{Path: "/dev/xvda", Type: "b", Major: 7, Minor: 4}); !errdefs.IsNotFound(err) {
		t.Fatalf("7:4 (no such device): %v, want NotFound", err)
	}
}

func TestDeviceReadOnly(t *testing.T) {
	maj, min, other := int64(7), int64(3), int64(4)
	d := specs.LinuxDevice{Path: "/dev/xvda", Type: "b", Major: maj, Minor: min}
	rule := func(access string, minor *int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: &maj, Minor: minor, Access: access}
	}
	for name, c := range map[string]struct {
		r    *specs.LinuxResources
		want bool
	}{
		"no resources":  {nil, false},
		"no rule":       {&specs.LinuxResources{}, false},
		"rwm":           {&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{rule("rwm", &min)}}, false},
		"r":             {&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{rule("r", &min)}}, true},
		"r then rw":     {&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{rule("r", &min), rule("rw", &min)}}, false},
		"another's r":   {&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{rule("r", &other)}}, false},
		"a deny of all": {&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, rule("rm", &min)}}, true},
	} {
		if got := deviceReadOnly(c.r, d); got != c.want {
			t.Errorf("%s: read-only %v, want %v", name, got, c.want)
		}
	}
}

func TestGuestCharDevice(t *testing.T) {
	for _, c := range []struct {
		major, minor int64
		want         bool
	}{{1, 3, true}, {1, 9, true}, {5, 2, true}, {136, 0, true}, {10, 229, true}, {10, 232, false}, {189, 0, false}, {226, 0, false}} {
		if got := guestCharDevice(c.major, c.minor); got != c.want {
			t.Errorf("%d:%d: %v, want %v", c.major, c.minor, got, c.want)
		}
	}
}

func TestDiskIDIsASerial(t *testing.T) {
	id := diskID(4095, 1048575, true)
	if len(id) > 20 || id == diskID(4095, 1048575, false) || diskID(7, 31, false) == diskID(73, 1, false) {
		t.Fatalf("disk id %q: want at most 20 bytes, one per device and read-only flag", id)
	}
}

func TestHostBlockInUse(t *testing.T) {
	sysfs := t.TempDir()
	disk := filepath.Join(sysfs, "devices", "sda")
	os.MkdirAll(filepath.Join(disk, "sda1"), 0o755)
	os.MkdirAll(filepath.Join(disk, "holders"), 0o755)
	os.WriteFile(filepath.Join(disk, "sda1", "partition"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(disk, "sda1", "dev"), []byte("8:1\n"), 0o644)
	os.MkdirAll(filepath.Join(sysfs, "dev", "block"), 0o755)
	os.Symlink(disk, filepath.Join(sysfs, "dev", "block", "8:0"))
	loop := filepath.Join(sysfs, "devices", "loop3")
	os.MkdirAll(filepath.Join(loop, "holders"), 0o755)
	os.Symlink(loop, filepath.Join(sysfs, "dev", "block", "7:3"))

	root := []mountinfo.Info{{Major: 8, Minor: 1, MountPoint: "/"}, {Major: 0, Minor: 25, MountPoint: "/run"}}
	if why := hostBlockInUse(sysfs, root, 8, 0); why != "has partition sda1 mounted on /" {
		t.Errorf("sda with sda1 on /: %q", why)
	}
	if why := hostBlockInUse(sysfs, []mountinfo.Info{{Major: 7, Minor: 3, MountPoint: "/mnt"}}, 7, 3); why != "is mounted on /mnt" {
		t.Errorf("loop3 on /mnt: %q", why)
	}
	if why := hostBlockInUse(sysfs, root, 7, 3); why != "" {
		t.Errorf("loop3, free: %q", why)
	}
	os.MkdirAll(filepath.Join(loop, "holders", "dm-0"), 0o755)
	if why := hostBlockInUse(sysfs, root, 7, 3); why != "is held by dm-0" {
		t.Errorf("loop3 under dm-0: %q", why)
	}
}

func TestAllDevicesAllowed(t *testing.T) {
	maj := int64(7)
	for name, c := range map[string]struct {
		rules []specs.LinuxDeviceCgroup
		want  bool
	}{
		"none":             {nil, false},
		"deny all":         {[]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, false},
		"privileged":       {[]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}, {Allow: true, Access: "rwm"}}, true},
		"type a":           {[]specs.LinuxDeviceCgroup{{Allow: true, Type: "a", Access: "rwm"}}, true},
		"one major":        {[]specs.LinuxDeviceCgroup{{Allow: true, Type: "b", Major: &maj, Access: "rwm"}}, false},
		"all, then denied": {[]specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}, {Allow: false, Access: "rwm"}}, false},
	} {
		if got := allDevicesAllowed(&specs.LinuxResources{Devices: c.rules}); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}
