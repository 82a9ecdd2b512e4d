// Package boot does what the agent must do as PID 1 of the guest before it
// serves anything: mount the system filesystems, load kernel modules, and
// at the end power the machine off.
package boot

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

type mnt struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	// always: mount even if target is already a mount point (proc must
	// match the agent's pid namespace).
	always bool
}

var systemMounts = []mnt{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", true},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", false},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", false},
	{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", false},
}

// MountSystem mounts proc, sys, dev, devpts, /dev/shm, /run and the cgroup
// hierarchy, skipping those already mounted (except proc, which is always
// mounted fresh so it shows the agent's own pid namespace).
func MountSystem() error {
	// Mounts made below must not propagate to a parent mount namespace
	// (when the agent runs on a host for tests).
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make / private: %w", err)
	}
	for _, m := range systemMounts {
		if err := mountOne(m); err != nil {
			return err
		}
	}
	return mountCgroups()
}

func mountOne(m mnt) error {
	if !m.always && isMountPoint(m.target) {
		return nil
	}
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point, by comparing its
// device with its parent's (enough for the system mounts).
func isMountPoint(path string) bool {
	var st, pst unix.Stat_t
	if unix.Lstat(path, &st) != nil || unix.Lstat(filepath.Dir(path), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino
}

// mountCgroups mounts cgroup v2 (unified) when the kernel has it, and the
// v1 controllers otherwise, then delegates every controller to children.
func mountCgroups() error {
	const root = "/sys/fs/cgroup"
	if isMountPoint(root) {
		return nil
	}
	fss, _ := os.ReadFile("/proc/filesystems")
	if strings.Contains(string(fss), "\tcgroup2\n") {
		if err := mountOne(mnt{"cgroup2", root, "cgroup2", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "nsdelegate", false}); err != nil {
			return err
		}
		ctrls, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			return err
		}
		var enable []string
		for _, c := range strings.Fields(string(ctrls)) {
			enable = append(enable, "+"+c)
		}
		if len(enable) > 0 {
			if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0); err != nil {
				return fmt.Errorf("enable cgroup controllers %v: %w", enable, err)
			}
		}
		return nil
	}
	if err := mountOne(mnt{"tmpfs", root, "tmpfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "mode=0755", false}); err != nil {
		return err
	}
	f, err := os.Open("/proc/cgroups")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || strings.HasPrefix(fields[0], "#") || fields[3] != "1" {
			continue
		}
		if err := mountOne(mnt{"cgroup", filepath.Join(root, fields[0]), "cgroup", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, fields[0], false}); err != nil {
			return err
		}
	}
	return sc.Err()
}

// PowerOff syncs the disks and powers the machine off. In a pid namespace
// other than the initial one it only ends the agent's namespace.
func PowerOff() {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		slog.Error("power off failed", "err", err)
		os.Exit(1)
	}
}
