package container

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
)

// sharedNS are the sandbox's shared IPC and UTS namespaces (a pod's), kept
// alive by bind mounts of their nsfs files under dir.
type sharedNS struct {
	dir  string
	made bool
}

// sharedNSTypes are the namespaces a container may name by
// pb.SandboxNamespace.
var sharedNSTypes = map[specs.LinuxNamespaceType]int{
	specs.IPCNamespace: unix.CLONE_NEWIPC,
	specs.UTSNamespace: unix.CLONE_NEWUTS,
}

func (n *sharedNS) path(t specs.LinuxNamespaceType) string {
	return filepath.Join(n.dir, string(t))
}

// ensure makes the shared namespaces on first use: a thread unshares them
// (inheriting the sandbox's hostname and IPC settings of the moment) and
// its namespace files are bind-mounted, so they outlive it. The thread is
// never given back to the Go runtime: it ends with its goroutine.
func (n *sharedNS) ensure() error {
	if n.made {
		return nil
	}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return fmt.Errorf("sandbox namespaces: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // for good: the thread's namespaces change
		flags := 0
		for _, f := range sharedNSTypes {
			flags |= f
		}
		if err := unix.Unshare(flags); err != nil {
			errc <- fmt.Errorf("sandbox namespaces: unshare: %w", err)
			return
		}
		tid := unix.Gettid()
		for t := range sharedNSTypes {
			target := n.path(t)
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				errc <- fmt.Errorf("sandbox %s namespace: %w", t, err)
				return
			}
			src := fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, nsFile(t))
			if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
				errc <- fmt.Errorf("sandbox %s namespace: bind %s: %w", t, src, err)
				return
			}
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		n.release()
		return err
	}
	n.made = true
	return nil
}

// nsFile is the name of a namespace type's file in /proc/PID/ns.
func nsFile(t specs.LinuxNamespaceType) string {
	if t == specs.UTSNamespace {
		return "uts"
	}
	return "ipc"
}

// release unmounts and removes the namespace files; the namespaces go
// with their last process.
func (n *sharedNS) release() {
	for t := range sharedNSTypes {
		p := n.path(t)
		_ = unix.Unmount(p, unix.MNT_DETACH)
		_ = os.Remove(p)
	}
	n.made = false
}

// resolveSharedNS replaces pb.SandboxNamespace paths in the spec by the
// sandbox's shared namespaces, making them on first use.
func (m *Manager) resolveSharedNS(s *specs.Spec) error {
	if s.Linux == nil {
		return nil
	}
	for i := range s.Linux.Namespaces {
		ns := &s.Linux.Namespaces[i]
		if ns.Path != pb.SandboxNamespace {
			continue
		}
		field := fmt.Sprintf("OCI.Linux.Namespaces[%d].Path", i)
		if _, ok := sharedNSTypes[ns.Type]; !ok {
			return invalid(field, "%q: the sandbox shares only ipc and uts namespaces, not %q", ns.Path, ns.Type)
		}
		m.mu.Lock()
		sb := m.sandbox
		m.mu.Unlock()
		if sb == nil {
			return fmt.Errorf("%s %q: no sandbox: %w", field, ns.Path, errdefs.ErrFailedPrecondition)
		}
		sb.nsMu.Lock()
		err := sb.ns.ensure()
		sb.nsMu.Unlock()
		if err != nil {
			return err
		}
		ns.Path = sb.ns.path(ns.Type)
	}
	return nil
}
