package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultUsernsRootDir is where the root filesystems of containers with a
// user namespace are bind-mounted (see bindUsernsRoot).
const DefaultUsernsRootDir = "/run/vc-agent-userns"

// hasUserns reports whether the spec asks for a user namespace.
func hasUserns(s *specs.Spec) bool {
	if s.Linux == nil {
		return false
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			return true
		}
	}
	return false
}

// bindSysForUserns makes the spec's sysfs mounts recursive read-only bind
// mounts of the agent's /sys, for a container with a user namespace that
// shares the sandbox's network namespace (the VM's network is the pod's):
// the kernel lets a user namespace mount sysfs only with a network
// namespace it owns, and a new sysfs would fail with EPERM. This is what
// runc's rootless spec has for /sys. The bind must be recursive (the
// mounts below the agent's /sys are locked in the container's mount
// namespace) and is made read-only all through when the mount asks for
// "ro"; a "cgroup" mount in the spec still covers /sys/fs/cgroup.
func bindSysForUserns(s *specs.Spec) {
	for i, m := range s.Mounts {
		if m.Type != "sysfs" {
			continue
		}
		opts := []string{"rbind"}
		for _, o := range m.Options {
			if o == "ro" {
				o = "rro"
			}
			opts = append(opts, o)
		}
		s.Mounts[i] = specs.Mount{Destination: m.Destination, Type: "bind", Source: "/sys", Options: opts}
	}
}

// bindUsernsRoot bind-mounts the root filesystem of a container with a
// user namespace on dir/id, a path every user can search, and points the
// spec's root at it. It returns the mount point, or "" for a container
// without a user namespace.
//
// libcontainer prepares the root from inside the new user namespace: it
// makes the root's mount private and bind-mounts the root on itself, by
// path, as the container's root user, an unprivileged user of the guest
// (the mapped uid) with no capability over the guest's files. The root
// filesystems the host shares sit below directories only the guest's
// root may search (the host's shared directory is 0700), so that lookup
// fails: "remount-private ... permission denied". runc leaves the layout
// of the bundle to its caller; here the layout is the host's share, so
// the agent gives the root a path of its own. The root directory itself
// keeps its mode: as with runc, the mapped root must be able to enter it.
func bindUsernsRoot(id string, s *specs.Spec, dir string) (string, error) {
	if !hasUserns(s) {
		return "", nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("user namespace root: %w", err)
	}
	// Searchable whoever made it; the agent's own directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("user namespace root: %w", err)
	}
	target := filepath.Join(dir, id)
	if err := os.Mkdir(target, 0o711); err != nil {
		return "", fmt.Errorf("user namespace root: %w", err)
	}
	if err := unix.Mount(s.Root.Path, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		os.Remove(target)
		return "", fmt.Errorf("OCI.Root.Path %q: bind on %s for the user namespace: %w", s.Root.Path, target, err)
	}
	s.Root.Path = target
	return target, nil
}

// unbindUsernsRoot undoes bindUsernsRoot.
func unbindUsernsRoot(target string) error {
	if target == "" {
		return nil
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount user namespace root %s: %w", target, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("user namespace root: %w", err)
	}
	return nil
}
