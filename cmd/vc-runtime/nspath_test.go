package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A namespace path of another type than its entry's is refused, naming
// the entry (runtime-tools linux_ns_path_type); one of its type is kept.
func TestCheckNamespacePaths(t *testing.T) {
	spec := func(typ specs.LinuxNamespaceType, path string) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: typ, Path: path}}}}
	}
	if err := checkNamespacePaths(spec(specs.IPCNamespace, "/proc/self/ns/ipc")); err != nil {
		t.Errorf("ipc namespace at /proc/self/ns/ipc: %v", err)
	}
	if err := checkNamespacePaths(spec(specs.NetworkNamespace, "/proc/self/ns/net")); err != nil {
		t.Errorf("network namespace at /proc/self/ns/net: %v", err)
	}
	err := checkNamespacePaths(spec(specs.CgroupNamespace, "/proc/self/ns/ipc"))
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "linux.namespaces[1].path /proc/self/ns/ipc: not a namespace of type cgroup") {
		t.Errorf("cgroup namespace at /proc/self/ns/ipc: %v", err)
	}
	if err := checkNamespacePaths(spec(specs.UTSNamespace, "/etc/hostname")); err == nil || !strings.Contains(err.Error(), "not a namespace") {
		t.Errorf("uts namespace at /etc/hostname: %v", err)
	}
	if err := checkNamespacePaths(spec(specs.UTSNamespace, "/nonexistent/ns")); err == nil || !strings.Contains(err.Error(), "linux.namespaces[1].path") {
		t.Errorf("uts namespace at a missing path: %v", err)
	}
}
