package qemu

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// DefaultUser is the host user QEMU runs as when root starts it
// (hypervisor.Config.User ""): a system user of its own, made by the
// install step (hack/install-deps.sh).
const DefaultUser = "vc-qemu"

// confineRoot is where QEMU's root file system is put together, in the
// mount namespace of the thread that forks QEMU only: on the host it is
// an empty directory.
var confineRoot = "/run/vc-qemu-root"

// shareCaps are the capabilities QEMU keeps when it serves 9p shares:
// its 9p server acts on the shared files for the guest's users (reads
// and writes whatever the guest's root may, sets owners, modes and
// times). They act only on what its mount namespace holds. Without
// shares QEMU has none.
var shareCaps = []uintptr{unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID}

// confinement is how a QEMU started by root runs: as an unprivileged
// user, with only shareCaps (or nothing), in a mount namespace whose root
// holds only the system's programs and libraries, a few device nodes and
// the VM's own files (binds) at their host paths.
type confinement struct {
	user   string
	uid    uint32
	gid    uint32
	groups []uint32
	caps   []uintptr
	binds  []confineBind
	shares []string // 9p exports: shared mounts on the host, so that what is mounted below them later reaches QEMU
	bound  []string // the exports prepareHost bound on themselves to that end (releaseShares undoes them)
}

// confineBind is a host path QEMU uses, bound at the same path in its
// root.
type confineBind struct {
	path string
	rw   bool
}

// planConfinement says how QEMU runs for cfg: nil when it runs as its
// caller (who is not root, or asked for root).
func planConfinement(cfg *hypervisor.Config, qemuPath string) (*confinement, error) {
	if os.Geteuid() != 0 || cfg.User == hypervisor.UserRoot {
		return nil, nil
	}
	name := cmp.Or(cfg.User, DefaultUser)
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q for QEMU: %w (hack/install-deps.sh makes %s; hypervisor user %q runs QEMU as root): %w", name, err, DefaultUser, hypervisor.UserRoot, errdefs.ErrFailedPrecondition)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil || uid == 0 {
		return nil, fmt.Errorf("user %q for QEMU: uid %s gid %s: not an unprivileged user: %w", name, u.Uid, u.Gid, errdefs.ErrInvalidArgument)
	}
	c := &confinement{user: name, uid: uint32(uid), gid: uint32(gid)}
	// KVM (and vhost-net, opened by QEMU) through their groups: no
	// capability is needed for them.
	for _, dev := range []string{kvmDevice, "/dev/vhost-net"} {
		var st unix.Stat_t
		if unix.Stat(dev, &st) == nil && st.Gid != 0 && !slices.Contains(c.groups, st.Gid) {
			c.groups = append(c.groups, st.Gid)
		}
	}
	// A virtio-fs share is its daemon's business (virtiofs.go): QEMU
	// only connects to its socket, in the state directory.
	for _, fs := range cfg.SharedFS {
		if fs.Kind != hypervisor.FSVirtioFS {
			c.caps = shareCaps
		}
	}
	add := func(path string, rw bool) {
		if path != "" {
			c.binds = append(c.binds, confineBind{path: filepath.Clean(path), rw: rw})
		}
	}
	add(cfg.StateDir, true)
	for _, fs := range cfg.SharedFS {
		if fs.Kind == hypervisor.FSVirtioFS {
			continue
		}
		add(fs.HostPath, !fs.ReadOnly)
		c.shares = append(c.shares, filepath.Clean(fs.HostPath))
	}
	add(qemuPath, false)
	add(cfg.Kernel, false)
	add(cfg.Initrd, false)
	add(cfg.Firmware, false)
	for _, d := range cfg.Disks {
		add(d.Path, !d.ReadOnly)
	}
	add(cfg.MemoryFile, true)
	return c, nil
}

// env is the environment QEMU gets: nothing of its caller's but a PATH
// (the caller's may name directories its root does not have).
func (c *confinement) env() []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
}

// apply sets cmd to start as the confined user with the kept
// capabilities (the mount namespace is prepareThread's).
//
// QEMU also gets namespaces of its own: PID (it is PID 1; no other
// process, another sandbox's QEMU of the same user included, can be
// signalled or traced from it), network (it needs none: its NICs are
// descriptors, passt and the sockets are paths; the host's loopback
// services are not reachable), IPC and UTS.
func (c *confinement) apply(cmd *syscall.SysProcAttr) {
	cmd.Credential = &syscall.Credential{Uid: c.uid, Gid: c.gid, Groups: c.groups}
	cmd.AmbientCaps = c.caps
	cmd.Cloneflags |= unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS
}

// prepareHost readies the host side: QEMU's own files become its user's,
// the memory file (created empty if missing) too, and each 9p export a
// shared mount. Undone by releaseHost.
func (c *confinement) prepareHost(cfg *hypervisor.Config, paths statePaths) error {
	own := func(path string) error {
		if err := os.Lchown(path, int(c.uid), int(c.gid)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("give %s to %s: %w", path, c.user, err)
		}
		return nil
	}
	owned := []string{cfg.StateDir, paths.Console, paths.Passt}
	for _, fs := range cfg.SharedFS {
		if fs.Kind == hypervisor.FSVirtioFS {
			owned = append(owned, virtiofsSocket(cfg.StateDir, fs.Tag))
		}
	}
	for _, p := range owned {
		if err := own(p); err != nil {
			return err
		}
	}
	if cfg.MemoryFile != "" {
		f, err := os.OpenFile(cfg.MemoryFile, os.O_CREATE|os.O_RDONLY|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("memory file: %w", err)
		}
		f.Close()
		if err := own(cfg.MemoryFile); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(confineRoot, 0o755); err != nil {
		return fmt.Errorf("qemu root %s: %w", confineRoot, err)
	}
	bound, err := makeSharedMounts(c.shares)
	if err != nil {
		return err
	}
	c.bound = bound
	return nil
}

// makeSharedMounts makes each of dirs a shared mount (makeSharedMount)
// and returns those it bound on themselves; on error it undoes them.
func makeSharedMounts(dirs []string) ([]string, error) {
	var bound []string
	for _, d := range dirs {
		b, err := makeSharedMount(d)
		if err != nil {
			releaseShares(bound)
			return nil, err
		}
		if b {
			bound = append(bound, d)
		}
	}
	return bound, nil
}

// makeSharedMount makes dir a shared mount (a bind of itself, bound
// true, unless it is a mount point already): mounts made below it later
// propagate to QEMU's namespace, whose copy is its slave; their unmounts
// do too.
func makeSharedMount(dir string) (bound bool, err error) {
	mp, err := isMountPoint(dir)
	if err != nil {
		return false, fmt.Errorf("share %s: %w", dir, err)
	}
	if !mp {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return false, fmt.Errorf("share %s: bind it on itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		if !mp {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		return false, fmt.Errorf("share %s: make it a shared mount: %w", dir, err)
	}
	return !mp, nil
}

// releaseShares detaches the binds makeSharedMount made (and what is
// still mounted below them) once QEMU is gone.
func releaseShares(shares []string) {
	for _, s := range shares {
		if mp, err := isMountPoint(s); err == nil && mp {
			unix.Unmount(s, unix.MNT_DETACH)
		}
	}
}

// prepareThread runs on the thread that forks QEMU, which QEMU's process
// inherits: a mount namespace of its own whose root (pivot_root) holds
// /usr (read-only, and the usual /bin, /lib... links to it), the dynamic
// linker's cache, a /dev of a few nodes, an empty /tmp, and the binds;
// nothing else of the host (no /proc).
// Then no privilege can be gained (no_new_privs) and the capability
// bounding set holds only what QEMU keeps. The thread ends with the
// fork: it serves nothing else.
func (c *confinement) prepareThread() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("qemu mount namespace: %w", err)
	}
	// The host's later mounts and unmounts reach it; none of its go out.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("qemu mount namespace: make / a slave: %w", err)
	}
	root := confineRoot
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("qemu root: %w", err)
	}
	in := func(p string) string { return filepath.Join(root, p) }
	if err := bindInto(root, "/usr", false, true); err != nil {
		return err
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		host := "/" + d
		fi, err := os.Lstat(host)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return fmt.Errorf("qemu root: %w", err)
			}
			if err := os.Symlink(target, in(host)); err != nil {
				return fmt.Errorf("qemu root: %w", err)
			}
		case fi.IsDir():
			if err := bindInto(root, host, false, true); err != nil {
				return err
			}
		}
	}
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		if err := bindInto(root, "/etc/ld.so.cache", false, true); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(in("/dev"), 0o755); err != nil {
		return fmt.Errorf("qemu root: %w", err)
	}
	if err := unix.Mount("tmpfs", in("/dev"), "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("qemu root: /dev: %w", err)
	}
	for _, dev := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", kvmDevice, "/dev/vhost-net"} {
		if _, err := os.Stat(dev); err != nil {
			continue
		}
		if err := bindInto(root, dev, true, false); err != nil {
			return err
		}
	}
	// No /proc but /proc/self, QEMU's own (its 9p server changes
	// modes through /proc/self/fd/N): bound by mountProcSelf once QEMU
	// runs. A whole procfs would show, and open (/proc/PID/root), the
	// other processes of QEMU's user, other sandboxes' QEMUs.
	for _, d := range []string{"/tmp", "/proc/self", procStage} {
		if err := os.MkdirAll(in(d), 0o755); err != nil {
			return fmt.Errorf("qemu root: %w", err)
		}
	}
	if err := unix.Mount("tmpfs", in("/tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=01777,size=1m"); err != nil {
		return fmt.Errorf("qemu root: /tmp: %w", err)
	}
	// Parents before children: a path below a bound directory is
	// already there.
	binds := slices.Clone(c.binds)
	sort.Slice(binds, func(i, j int) bool { return binds[i].path < binds[j].path })
	var done []string
	for _, b := range binds {
		if slices.ContainsFunc(done, func(d string) bool { return within(b.path, d) }) {
			continue
		}
		if err := bindInto(root, b.path, b.rw, false); err != nil {
			return err
		}
		if fi, err := os.Stat(b.path); err == nil && fi.IsDir() {
			done = append(done, b.path)
		}
	}
	old := in("/.old")
	if err := os.Mkdir(old, 0o700); err != nil {
		return fmt.Errorf("qemu root: %w", err)
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("qemu root: pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("qemu root: %w", err)
	}
	if err := unix.Unmount("/.old", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("qemu root: detach the host's: %w", err)
	}
	os.Remove("/.old")
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("qemu root: read-only: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("qemu: no_new_privs: %w", err)
	}
	for cp := 0; cp <= unix.CAP_LAST_CAP; cp++ {
		if slices.Contains(c.caps, uintptr(cp)) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(cp), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("qemu: drop capability %d from the bounding set: %w", cp, err)
		}
	}
	return nil
}

// procStage is where mountProcSelf mounts a procfs in QEMU's namespace
// for the moment it takes to bind QEMU's own directory of it.
const procStage = "/.proc"

// mountProcSelf binds QEMU's own /proc/PID directory at /proc/self in its
// mount namespace (prepareThread left the mount points), from a thread
// that joins the namespace and ends with this call.
func mountProcSelf(pid int) error {
	errc := make(chan error, 1)
	goThrowaway(func() {
		errc <- func() error {
			ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid))
			if err != nil {
				return err
			}
			defer ns.Close()
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare fs: %w", err)
			}
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("join qemu's mount namespace: %w", err)
			}
			if err := unix.Mount("proc", procStage, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=invisible"); err != nil {
				return fmt.Errorf("mount proc: %w", err)
			}
			defer unix.Unmount(procStage, unix.MNT_DETACH)
			own := filepath.Join(procStage, strconv.Itoa(pid))
			if err := unix.Mount(own, "/proc/self", "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind %s on /proc/self: %w", own, err)
			}
			return nil
		}()
	})
	if err := <-errc; err != nil {
		return fmt.Errorf("qemu's /proc/self: %w", err)
	}
	return nil
}

// bindInto binds host path at the same path below root, creating its
// mount point; read-only unless rw, and never with set-user-id or (but
// for device nodes) devices.
func bindInto(root, path string, rw, dev bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("qemu root: %w", err)
	}
	target := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("qemu root: %w", err)
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("qemu root: %w", err)
	}
	if err := unix.Mount(path, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("qemu root: bind %s: %w", path, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID)
	if !rw {
		flags |= unix.MS_RDONLY
	}
	if !dev && fi.Mode()&os.ModeDevice == 0 {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("", target, "", flags, ""); err != nil {
		return fmt.Errorf("qemu root: remount %s: %w", path, err)
	}
	return nil
}

// within tells whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// coreMu serialises noCoreDumps.
var coreMu sync.Mutex

// noCoreDumps sets this process's core size limit to 0 until the
// returned func restores it: a child forked meanwhile (QEMU) keeps 0.
func noCoreDumps() (restore func()) {
	coreMu.Lock()
	var old unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_CORE, &old)
	// The soft limit only: the hard one is kept, so it can be restored.
	unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: old.Max})
	return func() {
		unix.Setrlimit(unix.RLIMIT_CORE, &old)
		coreMu.Unlock()
	}
}

// isMountPoint tells whether dir is a mount point of this mount namespace.
func isMountPoint(dir string) (bool, error) {
	infos, err := mountinfo.Read(mountinfo.Thread)
	if err != nil {
		return false, err
	}
	_, ok := mountinfo.Lookup(infos, filepath.Clean(dir))
	return ok, nil
}
