package main

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// nsTypes are the kernel's kinds of the spec's namespace types.
var nsTypes = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// checkNamespacePaths refuses a namespace path that is not a namespace of
// its entry's type, as runc does (the runtime spec: "the runtime MUST
// generate an error" when they differ). The paths are the host's: a pod's
// container names its pod's by them, and the network one is the VM's.
func checkNamespacePaths(spec *specs.Spec) error {
	if spec.Linux == nil {
		return nil
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		want, ok := nsTypes[ns.Type]
		if !ok {
			return fmt.Errorf("linux.namespaces[%d].type %q: %w", i, ns.Type, errdefs.ErrInvalidArgument)
		}
		// Non-blocking: a fifo's open would wait for a writer.
		f, err := os.OpenFile(ns.Path, os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("linux.namespaces[%d].path: %w", i, err)
		}
		got, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
		f.Close()
		if err != nil {
			return fmt.Errorf("linux.namespaces[%d].path %s: not a namespace: %w", i, ns.Path, err)
		}
		if got != want {
			return fmt.Errorf("linux.namespaces[%d].path %s: not a namespace of type %s: %w", i, ns.Path, ns.Type, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
