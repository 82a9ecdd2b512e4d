package shim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
)

// Rootfs mounts in containerd's mount manager formats (containerd 2.3,
// the erofs and ext4 snapshotters): a mount type may carry transform
// prefixes, "format/mkdir/overlay" say, and its source, target and
// options {{ mount N }} style templates that name where an earlier mount
// of the list was mounted, and X-containerd.mkdir.path options. containerd
// activates such a list itself (core/mount/manager) unless the runtime
// says it handles the types; a shim driven without containerd's mount
// manager, or by one that left the mounts to it, gets them as they are.
// activateMounts does what the mount manager's Activate does, for the
// transforms a rootfs uses: every mount before the last transformed one
// is mounted in a directory of its own under activationDir, the
// transforms are applied with what is mounted, and the rest (the system
// mounts) are mounted on target as containerd-shim-runc-v2 mounts its
// rootfs (mount.All).

// activationDirName, in the bundle, holds the mounts activated for the
// rootfs: one numbered directory each.
const activationDirName = "vc-mounts"

// mkdirPrefix is the mount manager's option that makes a directory.
const mkdirPrefix = "X-containerd.mkdir."

// transforms are the mount type prefixes activateMounts applies; the mount
// manager's mkfs (which makes a filesystem image) is not among them.
var transforms = map[string]bool{"format": true, "mkdir": true}

// splitTransforms splits a mount type into its transform prefixes and the
// type to mount: "format/mkdir/overlay" is [format mkdir] and overlay.
func splitTransforms(typ string) ([]string, string, error) {
	var trs []string
	for {
		tr, rest, ok := strings.Cut(typ, "/")
		if !ok {
			return trs, typ, nil
		}
		if !transforms[tr] {
			return nil, "", fmt.Errorf("mount type %q: transform %q: %w", typ, tr, errdefs.ErrNotImplemented)
		}
		trs = append(trs, tr)
		typ = rest
	}
}

// activateMounts mounts mounts on target, activating the mount manager's
// formats. On error nothing it mounted is left mounted.
func activateMounts(mounts []mount.Mount, activationDir, target string) (retErr error) {
	mounts = slices.Clone(mounts)
	// The last transformed mount is the first system mount: everything
	// before it is mounted here, for it to name.
	first := -1
	types := make([][]string, len(mounts))
	for i, m := range mounts {
		trs, typ, err := splitTransforms(m.Type)
		if err != nil {
			return fmt.Errorf("rootfs mount %d: %w", i, err)
		}
		if len(trs) > 0 {
			first = i
		}
		types[i] = trs
		mounts[i].Type = typ
	}
	if first == -1 {
		return mount.All(mounts, target)
	}
	if err := os.MkdirAll(activationDir, 0o700); err != nil {
		return fmt.Errorf("rootfs activation: %w", err)
	}
	defer func() {
		if retErr != nil {
			if err := deactivateMounts(activationDir); err != nil {
				retErr = errors.Join(retErr, err)
			}
		}
	}()
	var active []activeMount
	for i := range mounts[:first] {
		m, err := transformMount(mounts[i], types[i], active, activationDir)
		if err != nil {
			return fmt.Errorf("rootfs mount %d (%s): %w", i, mounts[i].Type, err)
		}
		mp := filepath.Join(activationDir, strconv.Itoa(i))
		if err := os.Mkdir(mp, 0o700); err != nil {
			return fmt.Errorf("rootfs mount %d: %w", i, err)
		}
		if err := m.Mount(mp); err != nil {
			return fmt.Errorf("rootfs mount %d (%s %s): %w", i, m.Type, m.Source, err)
		}
		active = append(active, activeMount{Mount: m, MountPoint: mp})
	}
	m, err := transformMount(mounts[first], types[first], active, activationDir)
	if err != nil {
		return fmt.Errorf("rootfs mount %d (%s): %w", first, mounts[first].Type, err)
	}
	mounts[first] = m
	system := mounts[first:]
	if err := mount.All(system, target); err != nil {
		mount.UnmountMounts(system, target, 0)
		return err
	}
	return nil
}

// transformMount applies a mount's transforms, in order.
func transformMount(m mount.Mount, trs []string, active []activeMount, activationDir string) (mount.Mount, error) {
	var err error
	for _, tr := range trs {
		switch tr {
		case "format":
			m, err = formatMount(m, active)
		case "mkdir":
			m, err = mkdirMount(m, activationDir)
		}
		if err != nil {
			return m, err
		}
	}
	return m, nil
}

// activeMount is a mount activateMounts made, and where.
type activeMount struct {
	mount.Mount
	MountPoint string
}

// formatMount fills in the {{ mount N }}, {{ source N }}, {{ target N }}
// and {{ overlay A B }} templates of a mount's source, target and options
// from the mounts activated before it (N counts from 0, in the list's
// order; overlay joins the mount points from A to B, either way).
func formatMount(m mount.Mount, active []activeMount) (mount.Mount, error) {
	get := func(i int) (activeMount, error) {
		if i < 0 || i >= len(active) {
			return activeMount{}, fmt.Errorf("mount index %d out of range: %d mounts before it: %w", i, len(active), errdefs.ErrInvalidArgument)
		}
		return active[i], nil
	}
	at := func(i int) (string, error) {
		a, err := get(i)
		return a.MountPoint, err
	}
	one := map[string]func(int) (string, error){
		"mount": at,
		"source": func(i int) (string, error) {
			a, err := get(i)
			return a.Source, err
		},
		"target": func(i int) (string, error) {
			a, err := get(i)
			return a.Target, err
		},
	}
	overlay := func(start, end int) (string, error) {
		var dirs []string
		step := 1
		if start > end {
			step = -1
		}
		for i := start; ; i += step {
			d, err := at(i)
			if err != nil {
				return "", err
			}
			dirs = append(dirs, d)
			if i == end {
				break
			}
		}
		return strings.Join(dirs, ":"), nil
	}
	// action evaluates one {{ name N [M] }}. (Not text/template: its
	// reflection keeps every exported method of the binary alive, which
	// made the shim 5 MB bigger.)
	action := func(s string) (string, error) {
		f := strings.Fields(s)
		if len(f) == 0 {
			return "", fmt.Errorf("empty action: %w", errdefs.ErrInvalidArgument)
		}
		var args []int
		for _, a := range f[1:] {
			n, err := strconv.Atoi(a)
			if err != nil {
				return "", fmt.Errorf("%s: argument %q is not a number: %w", f[0], a, errdefs.ErrInvalidArgument)
			}
			args = append(args, n)
		}
		if fn, ok := one[f[0]]; ok && len(args) == 1 {
			return fn(args[0])
		}
		if f[0] == "overlay" && len(args) == 2 {
			return overlay(args[0], args[1])
		}
		return "", fmt.Errorf("unknown function or wrong arguments %q (want mount N, source N, target N or overlay A B): %w", s, errdefs.ErrInvalidArgument)
	}
	format := func(s string) (string, error) {
		var b strings.Builder
		rest := s
		for {
			i := strings.Index(rest, "{{")
			if i < 0 {
				b.WriteString(rest)
				return b.String(), nil
			}
			j := strings.Index(rest[i:], "}}")
			if j < 0 {
				return "", fmt.Errorf("template %q: unclosed action: %w", s, errdefs.ErrInvalidArgument)
			}
			v, err := action(rest[i+2 : i+j])
			if err != nil {
				return "", fmt.Errorf("template %q: %w", s, err)
			}
			b.WriteString(rest[:i])
			b.WriteString(v)
			rest = rest[i+j+2:]
		}
	}
	var err error
	if m.Source, err = format(m.Source); err != nil {
		return m, err
	}
	if m.Target, err = format(m.Target); err != nil {
		return m, err
	}
	opts := make([]string, len(m.Options))
	for i, o := range m.Options {
		if opts[i], err = format(o); err != nil {
			return m, err
		}
	}
	m.Options = opts
	return m, nil
}

// mkdirMount makes the directories of a mount's X-containerd.mkdir.path
// options (path[:mode[:uid:gid]]) and drops the options. Like the mount
// manager's, it makes them only inside what it activated, and does not
// chmod or chown an existing directory.
func mkdirMount(m mount.Mount, activationDir string) (mount.Mount, error) {
	var opts []string
	for _, o := range m.Options {
		v, ok := strings.CutPrefix(o, mkdirPrefix)
		if !ok {
			opts = append(opts, o)
			continue
		}
		v, ok = strings.CutPrefix(v, "path=")
		if !ok {
			return m, fmt.Errorf("mount option %q: %w", o, errdefs.ErrInvalidArgument)
		}
		parts := strings.Split(v, ":")
		mode := os.FileMode(0o700)
		uid, gid := -1, -1
		switch len(parts) {
		case 4:
			var err1, err2 error
			uid, err1 = strconv.Atoi(parts[2])
			gid, err2 = strconv.Atoi(parts[3])
			if err := errors.Join(err1, err2); err != nil {
				return m, fmt.Errorf("mount option %q: uid:gid: %w: %w", o, err, errdefs.ErrInvalidArgument)
			}
			fallthrough
		case 2:
			p, err := strconv.ParseUint(parts[1], 8, 32)
			if err != nil || os.FileMode(p)&^os.ModePerm != 0 {
				return m, fmt.Errorf("mount option %q: mode %q: %w", o, parts[1], errdefs.ErrInvalidArgument)
			}
			mode = os.FileMode(p)
		case 1:
		default:
			return m, fmt.Errorf("mount option %q: %w", o, errdefs.ErrInvalidArgument)
		}
		dir := filepath.Clean(parts[0])
		if rel, err := filepath.Rel(activationDir, dir); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return m, fmt.Errorf("mount option %q: %s is not inside an activated mount: %w", o, dir, errdefs.ErrInvalidArgument)
		}
		if err := os.Mkdir(dir, mode); err != nil {
			if !os.IsExist(err) {
				return m, fmt.Errorf("mount option %q: %w", o, err)
			}
			continue
		}
		// Mkdir's mode is masked by the umask.
		if err := os.Chmod(dir, mode); err != nil {
			return m, fmt.Errorf("mount option %q: %w", o, err)
		}
		if uid != -1 {
			if err := os.Lchown(dir, uid, gid); err != nil {
				return m, fmt.Errorf("mount option %q: %w", o, err)
			}
		}
	}
	m.Options = opts
	return m, nil
}

// deactivateMounts unmounts what activateMounts mounted under
// activationDir, the last mounted first, and removes the directory. A
// directory still mounted is never removed with what is under it.
func deactivateMounts(activationDir string) error {
	ents, err := os.ReadDir(activationDir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rootfs activation: %w", err)
	}
	var idx []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			idx = append(idx, n)
		}
	}
	slices.Sort(idx)
	var errs []error
	for _, n := range slices.Backward(idx) {
		mp := filepath.Join(activationDir, strconv.Itoa(n))
		if err := mount.UnmountAll(mp, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			continue
		}
		if err := os.Remove(mp); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(activationDir); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
