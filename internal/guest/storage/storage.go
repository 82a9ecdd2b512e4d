// Package storage mounts in the guest the storages the host asks for:
// container root filesystems and volumes shared over 9p or virtio-fs,
// block devices, tmpfs (ephemeral) and plain directories (local).
//
// Mounts are reference-counted by mount point: when two containers use
// the same storage, Mount is called twice and the storage is unmounted
// at the second Unmount.
//
// Errors wrap errdefs sentinels and name the Storage field at fault.
package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/kmod"
	"github.com/virtcontainers/vc/internal/mountinfo"
)

// Storage drivers.
const (
	Driver9p        = "9p"
	DriverVirtioFS  = "virtio-fs"
	DriverBlk       = "blk"
	DriverEphemeral = "ephemeral"
	DriverLocal     = "local"
)

// Default9pMsize is the 9p message size used unless the storage's options
// set msize. The kernel lowers it to what the virtio transport supports.
const Default9pMsize = 512000

// The system the package works on; tests point these elsewhere.
var (
	sysfsRoot     = "/sys"
	devRoot       = "/dev"
	mountinfoPath = mountinfo.Self
	deviceTimeout = 5 * time.Second
	mountFn       = unix.Mount
	unmountFn     = unix.Unmount
)

// spec is a validated storage, ready to be mounted.
type spec struct {
	driver string
	source string
	fstype string
	opts   Options
	// dir: the storage is a directory to create (local), not a mount.
	dir  bool
	mode os.FileMode
	// fsgid: from an "fsgid=N" option of ephemeral and local storages.
	fsgid *uint32
}

// entry is a mounted storage.
type entry struct {
	driver, source string
	refs           int
	mounted        bool
	createdDir     bool
}

var (
	mu    sync.Mutex
	table = map[string]*entry{}
)

type driverFunc func(ctx context.Context, s *pb.Storage) (*spec, error)

var drivers = map[string]driverFunc{
	Driver9p:        prepare9p,
	DriverVirtioFS:  prepareVirtioFS,
	DriverBlk:       prepareBlk,
	DriverEphemeral: prepareEphemeral,
	DriverLocal:     prepareLocal,
}

// Drivers lists the storage drivers Mount knows, sorted.
func Drivers() []string {
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// mountRoot is the directory storages are mounted below (SetMountRoot).
var mountRoot = DefaultMountRoot

// DefaultMountRoot is where storages may be mounted unless SetMountRoot
// says otherwise: the runtime's directories, never the guest's system
// directories (/etc, /proc, /dev...).
const DefaultMountRoot = "/run"

// SetMountRoot sets the directory storages must be mounted below.
func SetMountRoot(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("storage root %q: not an absolute, clean path: %w", dir, errdefs.ErrInvalidArgument)
	}
	mountRoot = dir
	return nil
}

// checkMountPoint validates a mount point: absolute, clean, not "/", below
// the mount root, and not leading out of it through a symbolic link.
func checkMountPoint(mp string) (string, error) {
	switch {
	case mp == "":
		return "", invalid("mount_point", "empty")
	case !filepath.IsAbs(mp):
		return "", invalid("mount_point", "%q is not absolute", mp)
	case filepath.Clean(mp) != mp:
		return "", invalid("mount_point", "%q is not clean (want %q)", mp, filepath.Clean(mp))
	case mp == "/":
		return "", invalid("mount_point", "cannot mount over /")
	case strings.ContainsRune(mp, 0):
		return "", invalid("mount_point", "contains a NUL byte")
	case !below(mountRoot, mp):
		return "", invalid("mount_point", "%q is not below %s, where storages are mounted", mp, mountRoot)
	}
	// The deepest part that exists must resolve below the root too.
	existing := mp
	for {
		if _, err := os.Lstat(existing); err == nil || existing == mountRoot {
			break
		}
		existing = filepath.Dir(existing)
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("mount_point: %w", err)
	}
	root, err := filepath.EvalSymlinks(mountRoot)
	if err != nil {
		return "", fmt.Errorf("mount_point: storage root: %w", err)
	}
	if real != root && !below(root, real) {
		return "", invalid("mount_point", "%q leads to %s, outside %s, through a symbolic link", mp, real, mountRoot)
	}
	return mp, nil
}

// below tells whether p is strictly inside dir (both clean and absolute).
func below(dir, p string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// prepare validates s and resolves what it needs (waiting for a block
// device), without mounting anything.
func prepare(ctx context.Context, s *pb.Storage) (string, *spec, error) {
	if s == nil {
		return "", nil, invalid("storage", "missing")
	}
	mp, err := checkMountPoint(s.MountPoint)
	if err != nil {
		return "", nil, err
	}
	d, ok := drivers[s.Driver]
	if !ok {
		return "", nil, invalid("driver", "unknown storage driver %q (known: %s)", s.Driver, strings.Join(Drivers(), ", "))
	}
	sp, err := d(ctx, s)
	if err != nil {
		return "", nil, err
	}
	sp.driver = s.Driver
	return mp, sp, nil
}

// Mount mounts s at s.MountPoint and returns the mount point. If a
// storage of the same driver and source is mounted there already, it
// only takes another reference, released by Unmount.
func Mount(ctx context.Context, s *pb.Storage) (mountPoint string, err error) {
	mp, sp, err := prepare(ctx, s)
	if err != nil {
		return "", err
	}
	mu.Lock()
	defer mu.Unlock()
	return mp, mountLocked(mp, sp, s)
}

func mountLocked(mp string, sp *spec, s *pb.Storage) error {
	if e, ok := table[mp]; ok {
		if e.driver != sp.driver || e.source != sp.source {
			return fmt.Errorf("mount_point: %s already holds %s storage %q, not %s storage %q: %w",
				mp, e.driver, e.source, sp.driver, sp.source, errdefs.ErrAlreadyExists)
		}
		e.refs++
		slog.Debug("storage reused", "mount_point", mp, "driver", sp.driver, "refs", e.refs)
		return nil
	}
	e, err := mountSpec(mp, sp, s.GetFsGroup())
	if err != nil {
		return err
	}
	table[mp] = e
	slog.Info("storage mounted", "mount_point", mp, "driver", sp.driver, "source", sp.source, "fstype", sp.fstype)
	return nil
}

// mountSpec makes the storage at mp: the directory, the mount, the
// ownership. On failure it undoes what it did.
func mountSpec(mp string, sp *spec, fsg *pb.FSGroup) (_ *entry, err error) {
	created, err := ensureDir(mp)
	if err != nil {
		return nil, err
	}
	e := &entry{driver: sp.driver, source: sp.source, refs: 1, createdDir: created}
	defer func() {
		if err == nil {
			return
		}
		if e.mounted {
			if uerr := unmount(mp); uerr != nil {
				slog.Warn("undo storage mount", "mount_point", mp, "err", uerr)
			}
		}
		if created {
			os.Remove(mp)
		}
	}()
	if sp.dir {
		if err := os.Chmod(mp, sp.mode); err != nil {
			return nil, fmt.Errorf("mount_point: chmod %s %o: %w", mp, sp.mode, err)
		}
	} else {
		if err := doMount(sp.source, mp, sp.fstype, sp.opts); err != nil {
			return nil, err
		}
		e.mounted = true
	}
	if err := applyFSGid(mp, sp.fsgid); err != nil {
		return nil, err
	}
	if fsg != nil {
		if sp.opts.Flags&unix.MS_RDONLY != 0 {
			slog.Debug("read-only storage: fs_group not applied", "mount_point", mp)
		} else if err := applyFSGroup(mp, fsg); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// ensureDir makes mp a directory, reporting whether it created it.
func ensureDir(mp string) (bool, error) {
	st, err := os.Lstat(mp)
	switch {
	case err == nil && st.IsDir():
		return false, nil
	case err == nil && st.Mode()&os.ModeSymlink != 0:
		return false, fmt.Errorf("mount_point: %s is a symbolic link: %w", mp, errdefs.ErrFailedPrecondition)
	case err == nil:
		return false, fmt.Errorf("mount_point: %s exists and is not a directory: %w", mp, errdefs.ErrFailedPrecondition)
	case !errors.Is(err, os.ErrNotExist):
		return false, fmt.Errorf("mount_point: %w", err)
	}
	if err := os.MkdirAll(mp, 0o755); err != nil {
		return false, fmt.Errorf("mount_point: %w", err)
	}
	return true, nil
}

// doMount mounts, then applies what mount(2) takes in further calls: the
// flags of a bind mount and the propagation.
func doMount(source, target, fstype string, o Options) error {
	if err := kmod.EnsureFS(fstype); err != nil {
		return err
	}
	flags := o.Flags
	if err := mountFn(source, target, fstype, flags, o.Data); err != nil {
		return mountError(fmt.Sprintf("mount %s %q on %s (flags %#x, data %q)", fstype, source, target, flags, o.Data), err)
	}
	if flags&unix.MS_BIND != 0 && flags&^(unix.MS_BIND|unix.MS_REC|unix.MS_REMOUNT) != 0 {
		rf := flags | unix.MS_REMOUNT | unix.MS_BIND
		if err := mountFn("", target, "", rf, ""); err != nil {
			unmountFn(target, unix.MNT_DETACH)
			return mountError(fmt.Sprintf("remount bind mount %s (flags %#x)", target, rf), err)
		}
	}
	if o.Propagation != 0 {
		if err := mountFn("", target, "", o.Propagation, ""); err != nil {
			unmountFn(target, unix.MNT_DETACH)
			return mountError(fmt.Sprintf("set propagation %#x of %s", o.Propagation, target), err)
		}
	}
	return nil
}

// mountError wraps a mount(2) error with the errdefs sentinel it maps to.
func mountError(what string, err error) error {
	var sentinel error
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO):
		sentinel = errdefs.ErrNotFound
	case errors.Is(err, unix.ENODEV):
		// No such filesystem type in the kernel.
		sentinel = errdefs.ErrFailedPrecondition
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		sentinel = errdefs.ErrPermissionDenied
	case errors.Is(err, unix.EINVAL):
		sentinel = errdefs.ErrInvalidArgument
	case errors.Is(err, unix.EBUSY):
		sentinel = errdefs.ErrAlreadyExists
	default:
		sentinel = errdefs.ErrUnknown
	}
	return fmt.Errorf("%s: %w: %w", what, err, sentinel)
}

// Unmount releases a reference to the storage at mountPoint, unmounting it
// (and removing the mount point if Mount created it) with the last one.
func Unmount(mountPoint string) error {
	mp, err := checkMountPoint(mountPoint)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	e, ok := table[mp]
	if !ok {
		return fmt.Errorf("mount_point: no storage is mounted at %s: %w", mp, errdefs.ErrNotFound)
	}
	if e.refs > 1 {
		e.refs--
		slog.Debug("storage released", "mount_point", mp, "refs", e.refs)
		return nil
	}
	if e.mounted {
		if err := unmount(mp); err != nil {
			return err
		}
	}
	delete(table, mp)
	if e.createdDir {
		if err := os.Remove(mp); err != nil && !errors.Is(err, os.ErrNotExist) {
			// A local storage keeps its files until the sandbox ends.
			slog.Debug("storage directory left in place", "mount_point", mp, "err", err)
		}
	}
	slog.Info("storage unmounted", "mount_point", mp, "driver", e.driver)
	return nil
}

// unmount unmounts mp, lazily when it is busy.
func unmount(mp string) error {
	err := unmountFn(mp, 0)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY):
		slog.Warn("storage busy, detaching it", "mount_point", mp)
		if err := unmountFn(mp, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s (detach): %w: %w", mp, err, errdefs.ErrUnavailable)
		}
		return nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		// Not a mount point (any more): someone else unmounted it.
		slog.Warn("storage was not mounted any more", "mount_point", mp, "err", err)
		return nil
	}
	return fmt.Errorf("unmount %s: %w: %w", mp, err, errdefs.ErrUnknown)
}

// UpdateEphemeral applies storages of the ephemeral and local drivers, as
// UpdateEphemeralMounts asks: one not mounted yet is mounted (holding one
// reference, as Mount does); a mounted ephemeral storage is remounted with
// the new options (a tmpfs's size=...); a local one gets the new mode. All
// storages are validated before any is applied.
func UpdateEphemeral(ctx context.Context, storages []*pb.Storage) error {
	type item struct {
		mp string
		sp *spec
		s  *pb.Storage
	}
	items := make([]item, 0, len(storages))
	for i, s := range storages {
		if s == nil {
			return invalid(fmt.Sprintf("storages[%d]", i), "missing")
		}
		if _, known := drivers[s.Driver]; known && s.Driver != DriverEphemeral && s.Driver != DriverLocal {
			return fmt.Errorf("storages[%d]: %w", i, invalid("driver", "%q storages cannot be updated, only %s and %s ones", s.Driver, DriverEphemeral, DriverLocal))
		}
		mp, sp, err := prepare(ctx, s)
		if err != nil {
			return fmt.Errorf("storages[%d]: %w", i, err)
		}
		items = append(items, item{mp, sp, s})
	}
	mu.Lock()
	defer mu.Unlock()
	for i, it := range items {
		if err := updateLocked(it.mp, it.sp, it.s); err != nil {
			return fmt.Errorf("storages[%d]: %w", i, err)
		}
	}
	return nil
}

func updateLocked(mp string, sp *spec, s *pb.Storage) error {
	e, tracked := table[mp]
	if tracked && e.driver != sp.driver {
		return fmt.Errorf("mount_point: %s holds %s storage, not %s: %w", mp, e.driver, sp.driver, errdefs.ErrAlreadyExists)
	}
	if sp.dir {
		if !tracked {
			return mountLocked(mp, sp, s)
		}
		if err := os.Chmod(mp, sp.mode); err != nil {
			return fmt.Errorf("mount_point: chmod %s %o: %w", mp, sp.mode, err)
		}
		return applyFSGid(mp, sp.fsgid)
	}
	if !tracked {
		infos, err := mountinfo.Read(mountinfoPath)
		if err != nil {
			return err
		}
		if m, ok := mountinfo.Lookup(infos, mp); !ok || m.FSType != sp.fstype {
			return mountLocked(mp, sp, s)
		}
		// Mounted by someone else: remount it, but do not own it.
	}
	flags := sp.opts.Flags&^(unix.MS_BIND|unix.MS_REC) | unix.MS_REMOUNT
	if err := mountFn(sp.source, mp, sp.fstype, flags, sp.opts.Data); err != nil {
		return mountError(fmt.Sprintf("remount %s (flags %#x, data %q)", mp, flags, sp.opts.Data), err)
	}
	slog.Info("ephemeral storage remounted", "mount_point", mp, "data", sp.opts.Data)
	return applyFSGid(mp, sp.fsgid)
}

// RemoveStaleVirtiofs unmounts the virtio-fs mounts at or below under
// (anywhere when under is "") that no storage reference holds, nor lie
// below a storage that one holds, and returns their mount points.
func RemoveStaleVirtiofs(under string) ([]string, error) {
	infos, err := mountinfo.Read(mountinfoPath)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	inUse := make([]string, 0, len(table))
	for mp := range table {
		inUse = append(inUse, mp)
	}
	stale := staleVirtiofs(infos, under, inUse)
	var errs []error
	var removed []string
	for _, mp := range stale {
		if err := unmountFn(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount stale virtio-fs mount %s: %w", mp, err))
			continue
		}
		slog.Info("stale virtio-fs mount removed", "mount_point", mp)
		removed = append(removed, mp)
	}
	return removed, errors.Join(errs...)
}

// staleVirtiofs picks the stale virtio-fs mounts, deepest first.
func staleVirtiofs(infos []mountinfo.Info, under string, inUse []string) []string {
	below := func(p, dir string) bool {
		return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
	}
	seen := map[string]bool{}
	var stale []string
outer:
	for _, m := range infos {
		if m.FSType != "virtiofs" || seen[m.MountPoint] {
			continue
		}
		if under != "" && !below(m.MountPoint, under) {
			continue
		}
		for _, u := range inUse {
			if below(m.MountPoint, u) {
				continue outer
			}
		}
		seen[m.MountPoint] = true
		stale = append(stale, m.MountPoint)
	}
	sort.Slice(stale, func(i, j int) bool {
		if a, b := strings.Count(stale[i], "/"), strings.Count(stale[j], "/"); a != b {
			return a > b
		}
		return stale[i] < stale[j]
	})
	return stale
}

// parseFSGid takes an "fsgid=N" option out of opts.
func parseFSGid(opts []string) ([]string, *uint32, error) {
	var rest []string
	var gid *uint32
	for _, o := range opts {
		v, ok := strings.CutPrefix(o, "fsgid=")
		if !ok {
			rest = append(rest, o)
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, nil, invalid("options", "bad fsgid %q", v)
		}
		g := uint32(n)
		gid = &g
	}
	return rest, gid, nil
}
