// Package hostcgroup puts a sandbox's VM process (the VMM and its helpers)
// in a host cgroup of the sandbox's own, from its first instruction, so
// that what the VM costs the host (guest RAM as it is touched, QEMU's own
// memory, its CPU time) is counted, and limited, where the pod's are: a
// CRI pod's cgroup (the kubelet's /stats/summary reads it), a container's
// cgroupsPath (podman stats).
//
// Which controllers the VM joins is a Mode: Account (cpuacct, memory,
// pids: the VM's CPU time and memory counted in the pod's cgroup, the
// pod's memory and pids limits holding it) or All (also cpu: the pod's
// CFS quota and shares throttle the VM, whose emulation under TCG costs
// far more host CPU than the guest uses). On cgroup v2 a process is in one
// cgroup with every controller enabled there: Account and All are the
// same. On a v1 host whose cpu and cpuacct share a hierarchy, Account
// joins cpu too.
//
// A new process starts in the cgroup: on v2 through CLONE_INTO_CGROUP
// (SysProcAttr.UseCgroupFD); on v1, where a thread has cgroups of its
// own, the thread that forks it joins the cgroup first (the child
// inherits the forking thread's cgroups) and leaves it after. A process
// already running (a VM from a factory's cache) is moved with Move: its
// later charges go to the cgroup; on v1 what it charged before stays
// where it was (memory.move_charge_at_immigrate, which moved it, is gone
// from current kernels: 6.18 refuses it).
package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Mode says which controllers a sandbox's VM joins.
type Mode string

const (
	// Off leaves the VM in the cgroups of the process that starts it.
	Off Mode = "off"
	// Account: cpuacct, memory and pids (v1); the one cgroup (v2).
	Account Mode = "account"
	// All: Account and cpu (v1); the one cgroup (v2).
	All Mode = "all"
)

// ParseMode checks a mode, naming field in its error; empty is Account.
func ParseMode(field, s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return Account, nil
	case Off, Account, All:
		return m, nil
	}
	return "", fmt.Errorf("%s %q: want %q, %q or %q: %w", field, s, Off, Account, All, errdefs.ErrInvalidArgument)
}

// controllers are the v1 controllers m joins.
func (m Mode) controllers() []string {
	switch m {
	case Account:
		return []string{"cpuacct", "memory", "pids"}
	case All:
		return []string{"cpu", "cpuacct", "memory", "pids"}
	}
	return nil
}

// Root is where the cgroup file systems are mounted.
var Root = "/sys/fs/cgroup"

// Cgroup is a sandbox's host cgroup: a directory in each hierarchy of its
// mode's controllers (v1), or one (v2).
type Cgroup struct {
	// Path is the cgroup's path within each hierarchy ("/kubepods/pod1/abc").
	Path string
	Mode Mode
	dirs []string // absolute, one per hierarchy
	v2   bool
	fd   int // v2: the directory, for CLONE_INTO_CGROUP; -1 otherwise
}

// IsV2 tells whether the host's cgroups are unified (v2 only).
func IsV2() bool {
	var st unix.Statfs_t
	return unix.Statfs(Root, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// ResolvePath turns an OCI linux.cgroupsPath into a path within the
// hierarchies: a cgroupfs path ("/kubepods/burstable/pod1/abc", relative
// ones taken from the root), or systemd's "slice:prefix:name" (a
// "kubepods-burstable-pod1.slice" nests in kubepods.slice and
// kubepods-burstable.slice; the unit is prefix-name.scope).
func ResolvePath(cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", fmt.Errorf("linux.cgroupsPath: empty: %w", errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(cgroupsPath, "/") && strings.Count(cgroupsPath, ":") == 2 {
		parts := strings.Split(cgroupsPath, ":")
		slice, prefix, name := parts[0], parts[1], parts[2]
		if slice == "" {
			slice = "system.slice"
		}
		dir, err := expandSlice(slice)
		if err != nil {
			return "", fmt.Errorf("linux.cgroupsPath %q: %w", cgroupsPath, err)
		}
		unit := name
		if prefix != "" {
			unit = prefix + "-" + name
		}
		if !strings.HasSuffix(unit, ".slice") {
			unit += ".scope"
		}
		return filepath.Join(dir, unit), nil
	}
	p := filepath.Clean("/" + cgroupsPath)
	if p == "/" {
		return "", fmt.Errorf("linux.cgroupsPath %q: the root cgroup: %w", cgroupsPath, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// expandSlice is systemd's path of a slice: a-b-c.slice is in a.slice/a-b.slice.
func expandSlice(slice string) (string, error) {
	name, ok := strings.CutSuffix(slice, ".slice")
	if !ok || name == "" || strings.Contains(name, "/") || strings.Contains(name, "--") || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") {
		return "", fmt.Errorf("slice %q: not a systemd slice name: %w", slice, errdefs.ErrInvalidArgument)
	}
	if name == "-" {
		return "/", nil
	}
	p, prefix := "/", ""
	for _, comp := range strings.Split(name, "-") {
		prefix += comp
		p = filepath.Join(p, prefix+".slice")
		prefix += "-"
	}
	return p, nil
}

// hierarchies returns the mount point of each v1 hierarchy holding one of
// controllers, each once (co-mounted controllers share one).
func hierarchies(controllers []string) ([]string, error) {
	var dirs []string
	for _, c := range controllers {
		p := filepath.Join(Root, c)
		real, err := filepath.EvalSymlinks(p) // cpu -> cpu,cpuacct
		if err != nil {
			return nil, fmt.Errorf("cgroup v1 controller %s: %w", c, err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(real, &st); err != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
			return nil, fmt.Errorf("cgroup v1 controller %s: %s is not a cgroup mount: %w", c, real, errdefs.ErrNotFound)
		}
		if !contains(dirs, real) {
			dirs = append(dirs, real)
		}
	}
	return dirs, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// dirsOf are the directories of path for mode.
func dirsOf(path string, mode Mode) (dirs []string, v2 bool, err error) {
	if IsV2() {
		return []string{filepath.Join(Root, path)}, true, nil
	}
	hs, err := hierarchies(mode.controllers())
	if err != nil {
		return nil, false, err
	}
	for _, h := range hs {
		dirs = append(dirs, filepath.Join(h, path))
	}
	return dirs, false, nil
}

// Create makes the cgroup at path (ResolvePath's) for mode's controllers.
// Missing parents are made too (the kubelet has made a pod's already). A
// cgroup there already is an error: it is the sandbox's own. On error
// nothing is left.
func Create(path string, mode Mode) (_ *Cgroup, err error) {
	if mode == Off || mode == "" {
		return nil, fmt.Errorf("host cgroup %s: mode %q: %w", path, mode, errdefs.ErrInvalidArgument)
	}
	dirs, v2, err := dirsOf(path, mode)
	if err != nil {
		return nil, fmt.Errorf("host cgroup %s: %w", path, err)
	}
	c := &Cgroup{Path: path, Mode: mode, v2: v2, fd: -1}
	defer func() {
		if err != nil {
			c.Remove()
		}
	}()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return nil, fmt.Errorf("host cgroup %s: %w", path, err)
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				err = fmt.Errorf("%w: %w", err, errdefs.ErrAlreadyExists)
			}
			return nil, fmt.Errorf("host cgroup %s: %w", path, err)
		}
		c.dirs = append(c.dirs, d)
	}
	if v2 {
		if c.fd, err = unix.Open(dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			return nil, fmt.Errorf("host cgroup %s: open %s: %w", path, dirs[0], err)
		}
	}
	return c, nil
}

// Dirs are the cgroup's directories, one per hierarchy.
func (c *Cgroup) Dirs() []string { return append([]string(nil), c.dirs...) }

// Prepare readies cmd to start in the cgroup (pkg/hypervisor's
// CgroupPlacer). On v2 it sets cmd's CLONE_INTO_CGROUP; on v1 it returns
// enter, which the thread that forks cmd must run first (locked to it),
// and leave, which that thread runs after the fork.
func (c *Cgroup) Prepare(cmd *exec.Cmd) (enter func() error, leave func(), err error) {
	if c.v2 {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = c.fd
		return nil, nil, nil
	}
	var back []string // the thread's own cgroups, to return to
	enter = func() error {
		tid := unix.Gettid()
		for _, d := range c.dirs {
			own, err := threadCgroup(tid, d)
			if err != nil {
				return fmt.Errorf("host cgroup %s: %w", c.Path, err)
			}
			if err := writeID(filepath.Join(d, "tasks"), tid); err != nil {
				leave()
				return fmt.Errorf("host cgroup %s: %w", c.Path, err)
			}
			back = append(back, own)
		}
		return nil
	}
	leave = func() {
		tid := unix.Gettid()
		for _, own := range back {
			// Best effort: the thread is locked and ends with its
			// goroutine, never serving another.
			_ = writeID(filepath.Join(own, "tasks"), tid)
		}
		back = nil
	}
	return enter, leave, nil
}

// threadCgroup is the directory, in the hierarchy mounted where dir is,
// of thread tid's cgroup.
func threadCgroup(tid int, dir string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/cgroup", tid))
	if err != nil {
		return "", err
	}
	for h := filepath.Dir(dir); h != "/" && h != "."; h = filepath.Dir(h) {
		if filepath.Dir(h) != filepath.Clean(Root) {
			continue
		}
		// h is the hierarchy's mount point: its name lists its controllers.
		want := strings.Split(filepath.Base(h), ",")
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.SplitN(line, ":", 3)
			if len(f) == 3 && sameControllers(strings.Split(f[1], ","), want) {
				return filepath.Join(h, f[2]), nil
			}
		}
		return "", fmt.Errorf("thread %d: no cgroup in the hierarchy of %s", tid, h)
	}
	return "", fmt.Errorf("%s: not under a hierarchy of %s", dir, Root)
}

func sameControllers(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !contains(b, x) {
			return false
		}
	}
	return true
}

func writeID(file string, id int) error {
	return os.WriteFile(file, []byte(strconv.Itoa(id)), 0)
}

// Move puts running process pid, all its threads, in the cgroup. On v1
// its memory charged so far stays where it was (see the package doc).
func (c *Cgroup) Move(pid int) error {
	for _, d := range c.dirs {
		if !c.v2 {
			// v1 kernels that still move charges (deprecated, gone by
			// 6.18, which refuses the write) move them; the file is in
			// the memory hierarchy only.
			_ = os.WriteFile(filepath.Join(d, "memory.move_charge_at_immigrate"), []byte("3"), 0)
		}
		if err := writeID(filepath.Join(d, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("host cgroup %s: move process %d: %w", c.Path, pid, err)
		}
	}
	return nil
}

// Pids are the processes in the cgroup (its first hierarchy's).
func (c *Cgroup) Pids() ([]int, error) {
	if len(c.dirs) == 0 {
		return nil, nil
	}
	return readPids(filepath.Join(c.dirs[0], "cgroup.procs"))
}

func readPids(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids, nil
}

// RemoveTimeout bounds how long Remove waits for the cgroup's processes
// to leave (an exiting QEMU, a thread returning to its own).
var RemoveTimeout = 5 * time.Second

// Remove removes the cgroup's directories (not the parents Create made:
// they may be shared, as a pod's cgroup is, and are whoever made them's),
// waiting up to RemoveTimeout for processes leaving it. A cgroup already
// gone is no error.
func (c *Cgroup) Remove() error {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	var errs []error
	for _, d := range c.dirs {
		if err := rmdir(d); err != nil {
			errs = append(errs, fmt.Errorf("host cgroup %s: %w", c.Path, err))
		}
	}
	return errors.Join(errs...)
}

// Remove removes the cgroup at path made for mode by another process.
func Remove(path string, mode Mode) error {
	if mode == Off || mode == "" || path == "" {
		return nil
	}
	dirs, _, err := dirsOf(path, mode)
	if err != nil {
		return fmt.Errorf("host cgroup %s: %w", path, err)
	}
	c := &Cgroup{Path: path, Mode: mode, dirs: dirs, fd: -1}
	return c.Remove()
}

func rmdir(d string) error {
	deadline := time.Now().Add(RemoveTimeout)
	for {
		err := unix.Rmdir(d)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(20 * time.Millisecond)
			continue
		case errors.Is(err, unix.EBUSY):
			pids, _ := readPids(filepath.Join(d, "cgroup.procs"))
			return fmt.Errorf("remove %s: %w (processes %v still in it)", d, err, pids)
		}
		return fmt.Errorf("remove %s: %w", d, err)
	}
}
