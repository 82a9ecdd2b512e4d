package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// A virtio-fs share is served by a virtiofsd of its own, started before
// QEMU (which connects to its vhost-user socket) and ending when QEMU
// closes it. It is QEMU 7.2's C virtiofsd, which Debian ships in
// qemu-system-common. It runs as root in a sandbox of its own making (its
// own mount, PID and network namespaces, pivot_root into the share, a
// seccomp filter, the capabilities a file server needs), so QEMU keeps
// none for it.
//
// Its options: files are read and written with direct I/O (cache=none:
// no page cache in the guest, so data is never stale, and a read lands
// in the reader's buffer as a 9p one does), while names and attributes
// are cached for a second (timeout=1: what makes lookups cheaper than
// 9p's, which ask the host every time); readdirplus hands the attributes
// over with the names; announce_submounts shows the guest each mount
// below the share as one (their inode numbers would collide otherwise).
// A file opened with direct I/O cannot be mapped shared (MAP_SHARED,
// even read-only, fails with ENODEV in the 6.1 kernel); private mappings,
// executables' among them, work.

// DefaultVirtiofsd is the virtiofsd used unless Config.VirtiofsdPath
// names another with the same options.
const DefaultVirtiofsd = "/usr/lib/qemu/virtiofsd"

// virtiofsdOptions are the -o options every share gets (see above).
var virtiofsdOptions = []string{"cache=always", "timeout=1", "announce_submounts", "sandbox=namespace"}

func virtiofsSocket(dir, tag string) string { return filepath.Join(dir, "vfs-"+tag+".sock") }
func virtiofsLog(dir, tag string) string    { return filepath.Join(dir, "vfs-"+tag+".log") }

// virtiofsdArgs are virtiofsd's arguments for fs, serving on sock.
func virtiofsdArgs(fs hypervisor.SharedFS, sock string) []string {
	args := []string{"--socket-path=" + sock, "-o", "source=" + fs.HostPath}
	for _, o := range virtiofsdOptions {
		args = append(args, "-o", o)
	}
	return args
}

// hasVirtioFS says whether cfg shares a directory over virtio-fs.
func hasVirtioFS(cfg *hypervisor.Config) bool {
	for _, fs := range cfg.SharedFS {
		if fs.Kind == hypervisor.FSVirtioFS {
			return true
		}
	}
	return false
}

// checkVirtioFS refuses what a virtio-fs share cannot be: read-only (the
// daemon has no such mode), in a VM with a memory file (a factory's
// template or a VM restored from one: QEMU cannot migrate a vhost-user-fs
// device), or started by a user other than root (the daemon's sandbox
// needs root).
func checkVirtioFS(cfg *hypervisor.Config) error {
	for _, fs := range cfg.SharedFS {
		if fs.Kind != hypervisor.FSVirtioFS {
			continue
		}
		switch {
		case fs.ReadOnly:
			return fmt.Errorf("shared fs %s: a read-only virtio-fs share: %w", fs.Tag, errdefs.ErrNotImplemented)
		case cfg.MemoryFile != "":
			return fmt.Errorf("shared fs %s: virtio-fs in a VM with a memory file (a factory's template or a VM restored from one): QEMU cannot migrate it; share over 9p: %w", fs.Tag, errdefs.ErrInvalidArgument)
		case os.Geteuid() != 0:
			return fmt.Errorf("shared fs %s: virtio-fs needs root (virtiofsd's sandbox): %w", fs.Tag, errdefs.ErrFailedPrecondition)
		}
	}
	if hasVirtioFS(cfg) {
		if _, err := os.Stat(virtiofsdPath(cfg)); err != nil {
			return fmt.Errorf("virtio-fs: virtiofsd %s: %w (apt-get install qemu-system-common, or set the hypervisor's virtiofsd path): %w", virtiofsdPath(cfg), err, errdefs.ErrNotFound)
		}
	}
	return nil
}

func virtiofsdPath(cfg *hypervisor.Config) string {
	if cfg.VirtiofsdPath != "" {
		return cfg.VirtiofsdPath
	}
	return DefaultVirtiofsd
}

// startVirtioFS readies cfg's virtio-fs shares: each is made a shared
// mount (the daemon lives in a mount namespace of its own: what is
// mounted below the share later must reach it), then gets a virtiofsd,
// waited for until it listens. It returns the daemons and the binds it
// made; on error nothing is left running or bound.
func startVirtioFS(ctx context.Context, vmID string, cfg *hypervisor.Config) (procs []*sideProc, bound []string, err error) {
	var dirs []string
	for _, fs := range cfg.SharedFS {
		if fs.Kind == hypervisor.FSVirtioFS {
			dirs = append(dirs, filepath.Clean(fs.HostPath))
		}
	}
	if len(dirs) == 0 {
		return nil, nil, nil
	}
	if bound, err = makeSharedMounts(dirs); err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", vmID, err)
	}
	defer func() {
		if err != nil {
			stopSides(procs)
			releaseShares(bound)
			procs, bound = nil, nil
		}
	}()
	for _, fs := range cfg.SharedFS {
		if fs.Kind != hypervisor.FSVirtioFS {
			continue
		}
		p := &sideProc{
			what: fmt.Sprintf("vm %s: shared fs %s: virtiofsd", vmID, fs.Tag),
			sock: virtiofsSocket(cfg.StateDir, fs.Tag),
			log:  virtiofsLog(cfg.StateDir, fs.Tag),
		}
		os.Remove(p.sock)
		logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return procs, bound, fmt.Errorf("%s: log: %w", p.what, err)
		}
		p.cmd = exec.Command(virtiofsdPath(cfg), virtiofsdArgs(fs, p.sock)...)
		p.cmd.Stdout = logf
		p.cmd.Stderr = logf
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if cfg.DieWithParent {
			p.cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		}
		err = p.start(ctx, cfg.Cgroup, cfg.DieWithParent, nil)
		logf.Close()
		if err != nil {
			return procs, bound, err
		}
		procs = append(procs, p)
	}
	return procs, bound, nil
}

func stopSides(procs []*sideProc) {
	for _, p := range procs {
		p.stop()
	}
}

// vhostUserFS is a virtio-fs device, its vhost-user socket a chardev.
type vhostUserFS struct {
	ID   string // the device; the chardev is ID+"-chr"
	Sock string
	Tag  string
}

func (d vhostUserFS) QemuParams() []string {
	return []string{
		"-chardev", props{}.add("id", d.ID+"-chr").add("path", d.Sock).cli("socket"),
		"-device", props{}.add("id", d.ID).add("chardev", d.ID+"-chr").add("tag", d.Tag).add("queue-size", 1024).cli("vhost-user-fs-pci"),
	}
}
