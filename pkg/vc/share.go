package vc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// The sandbox's shared directory is exported to the guest over 9p with this
// tag and mounted there at guestSharedDir. Container root filesystems and
// volumes are bind-mounted below it on the host, so new containers need no
// new device.
const (
	sharedTag      = "vcshared"
	guestSharedDir = "/run/vc/shared"
)

// The kinds of HypervisorConfig.SharedFS.
const (
	SharedFS9P       = "9p"
	SharedFSVirtioFS = "virtio-fs"
)

// CheckSharedFS checks a HypervisorConfig.SharedFS value that field
// gave (a flag's or a configuration key's name, for the error).
func CheckSharedFS(field, fs string) error {
	switch fs {
	case "", SharedFS9P, SharedFSVirtioFS:
		return nil
	}
	return fmt.Errorf("%s %q: want %s or %s: %w", field, fs, SharedFS9P, SharedFSVirtioFS, errdefs.ErrInvalidArgument)
}

// sharedFSKind is the hypervisor's kind of device for h.SharedFS.
func sharedFSKind(h HypervisorConfig) hypervisor.FSKind {
	if h.SharedFS == SharedFSVirtioFS {
		return hypervisor.FSVirtioFS
	}
	return hypervisor.FS9P
}

// sharedStorage is the agent's storage of the shared directory.
func sharedStorage(h HypervisorConfig) *pb.Storage {
	if h.SharedFS == SharedFSVirtioFS {
		return &pb.Storage{Driver: "virtio-fs", Source: sharedTag, Fstype: "virtiofs", MountPoint: guestSharedDir}
	}
	return &pb.Storage{Driver: "9p", Source: sharedTag, Fstype: "9p", MountPoint: guestSharedDir}
}

// shareContainer bind-mounts a container's rootfs and bind volumes into the
// sandbox's shared directory and rewrites spec to the guest paths. On
// error nothing stays mounted.
func shareContainer(sharedDir, cid, rootfs string, spec *specs.Spec) (err error) {
	fi, err := os.Stat(rootfs)
	if err != nil {
		return fmt.Errorf("rootfs %q: %w", rootfs, errdefs.ErrInvalidArgument)
	}
	if !fi.IsDir() {
		return fmt.Errorf("rootfs %q: not a directory: %w", rootfs, errdefs.ErrInvalidArgument)
	}
	base := filepath.Join(sharedDir, cid)
	defer func() {
		if err != nil {
			unshareContainer(sharedDir, cid)
		}
	}()
	target := filepath.Join(base, "rootfs")
	// Shared writable even for a read-only root: the guest's runtime
	// creates mount points in it (/proc, /dev...) before it makes it
	// read-only, as spec.Root.Readonly says (a pause image has no /proc).
	if err := bind(rootfs, target, true, bindMode{recursive: true}); err != nil {
		return fmt.Errorf("share rootfs %q: %w", rootfs, err)
	}
	spec.Root = &specs.Root{Path: guestSharedDir + "/" + cid + "/rootfs", Readonly: spec.Root != nil && spec.Root.Readonly}
	mounts := make([]specs.Mount, 0, len(spec.Mounts))
	for i, m := range spec.Mounts {
		mounts = append(mounts, m)
		if !isBind(m) || strings.HasPrefix(m.Source, guestWatchedDir+"/") {
			continue // a copy in the guest (watchvol.go)
		}
		st, err := os.Stat(m.Source)
		if err != nil {
			// One line (errors.Join would print the sentinel on a line
			// of its own).
			return fmt.Errorf("mounts[%d].source %q (destination %s): %w: %w", i, m.Source, m.Destination, err, errdefs.ErrInvalidArgument)
		}
		if st.Mode().Type() == fs.ModeSocket {
			// 9p cannot carry a host socket (the guest sees a file
			// nothing can connect to): the source stays a host path,
			// and Sandbox.proxySockets gives the mount a socket proxy.
			continue
		}
		name := strconv.Itoa(i)
		mode := bindMode{
			recursive: hasOpt(m.Options, "rbind"),
			ro:        hasOpt(m.Options, "ro") || hasOpt(m.Options, "rro"),
			rro:       hasOpt(m.Options, "rro"),
		}
		subs, err := shareVolume(base, name, m, st.IsDir(), mode)
		if err != nil {
			return fmt.Errorf("share mounts[%d] %q (destination %s): %w", i, m.Source, m.Destination, err)
		}
		mounts[len(mounts)-1].Source = guestSharedDir + "/" + cid + "/mounts/" + name
		mounts = append(mounts, subs...)
	}
	spec.Mounts = mounts
	return nil
}

// shareVolume binds a volume's source at <base>/mounts/<name>, on its
// own (never recursively), and each host mount below the source (for
// "rbind") at <base>/mounts/<name>.<k>; it returns the guest mounts that
// put those submounts back in place over the volume, parents first.
//
// A recursive bind would copy the submounts onto the source's own
// directories: their dentries would stay mount points on the host while
// the container lives, so the owner of the source could not remove a
// directory it unmounted (rmdir: EBUSY), as critest does. Flat binds
// hold only the mounts themselves. The submounts keep their own
// read-only state for "ro" (only the volume's top is read-only, as runc
// does), and are all read-only for "rro".
func shareVolume(base, name string, m specs.Mount, dir bool, mode bindMode) ([]specs.Mount, error) {
	// Submounts are found by mount point, which is a resolved path.
	src, err := filepath.EvalSymlinks(m.Source)
	if err != nil {
		return nil, errors.Join(err, errdefs.ErrInvalidArgument)
	}
	var subs []mountinfo.Info
	if mode.recursive && dir {
		if subs, err = submounts(src); err != nil {
			return nil, err
		}
	}
	if err := bind(src, filepath.Join(base, "mounts", name), dir, bindMode{ro: mode.ro}); err != nil {
		return nil, err
	}
	guestDir := guestSharedDir + "/" + filepath.Base(base) + "/mounts/"
	var out []specs.Mount
	for k, sm := range subs {
		rel, _ := strings.CutPrefix(sm.MountPoint, src+"/")
		fi, err := os.Stat(sm.MountPoint)
		if err != nil {
			return nil, fmt.Errorf("submount %s: %w", sm.MountPoint, err)
		}
		ro := mode.rro || hasOpt(strings.Split(sm.Options, ","), "ro")
		subName := name + "." + strconv.Itoa(k+1)
		if err := bind(sm.MountPoint, filepath.Join(base, "mounts", subName), fi.IsDir(), bindMode{ro: ro}); err != nil {
			return nil, err
		}
		opt := "rw"
		if ro {
			opt = "ro"
		}
		out = append(out, specs.Mount{
			Destination: path.Join(m.Destination, rel),
			Type:        "bind",
			Source:      guestDir + subName,
			Options:     []string{"bind", opt},
		})
	}
	return out, nil
}

// submounts are the host mounts strictly below dir, parents before
// children (mountinfo's order).
func submounts(dir string) ([]mountinfo.Info, error) {
	infos, err := mountinfo.Read(mountinfo.Thread)
	if err != nil {
		return nil, err
	}
	var out []mountinfo.Info
	for _, mi := range infos {
		if strings.HasPrefix(mi.MountPoint, dir+"/") {
			out = append(out, mi)
		}
	}
	return out, nil
}

// unshareContainer unmounts and removes everything shareContainer made.
func unshareContainer(sharedDir, cid string) error {
	base := filepath.Join(sharedDir, cid)
	var errs []error
	if ents, err := os.ReadDir(filepath.Join(base, "mounts")); err == nil {
		for _, e := range ents {
			errs = append(errs, unmount(filepath.Join(base, "mounts", e.Name())))
		}
	}
	errs = append(errs, unmount(filepath.Join(base, "rootfs")))
	// Never through a mount that would not go: that is the user's data.
	if err := mount.RemoveAll(base); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// bindMode is how a volume is bound: OCI's "bind" or "rbind", "ro" (the
// top mount only) or "rro" (every submount too).
type bindMode struct {
	recursive, ro, rro bool
}

func bind(src, target string, dir bool, mode bindMode) error {
	if dir {
		if err := os.MkdirAll(target, 0o700); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		f.Close()
	}
	// The bind is made detached (open_tree), given its flags and only
	// then put in place (move_mount): the shared directory is a shared
	// mount when QEMU runs in a mount namespace of its own (a slave of
	// it), and a mount propagates with the flags it has when it is
	// attached; a read-only remount afterwards would not reach QEMU's
	// copy.
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	if mode.recursive {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, uint(flags))
	if err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	defer unix.Close(fd)
	// Host mounts made later below src must not show up in the guest, and
	// guest-side changes never propagate back.
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Propagation: unix.MS_PRIVATE}); err != nil {
		return fmt.Errorf("bind %s on %s: make it private: %w", src, target, err)
	}
	if mode.rro || mode.ro {
		at := unix.AT_EMPTY_PATH
		what := "read-only"
		if mode.rro {
			at |= unix.AT_RECURSIVE
			what = "recursively read-only (rro)"
		}
		if err := unix.MountSetattr(fd, "", uint(at), &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("bind %s on %s: make it %s: %w", src, target, what, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, target, err)
	}
	return nil
}

func unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

func isBind(m specs.Mount) bool {
	return m.Type == "bind" || hasOpt(m.Options, "bind") || hasOpt(m.Options, "rbind")
}

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}
