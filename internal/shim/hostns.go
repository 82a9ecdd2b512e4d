package shim

import (
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hostNamespaces are the namespaces whose absence from a spec means the
// host's (Kubernetes' hostNetwork, hostIPC, hostPID), with the pod field
// that asks for it.
var hostNamespaces = []struct {
	typ   specs.LinuxNamespaceType
	field string
}{
	{specs.NetworkNamespace, "hostNetwork"},
	{specs.IPCNamespace, "hostIPC"},
	{specs.PIDNamespace, "hostPID"},
}

// refuseHostNamespaces fails a spec that asks for one of the host's
// namespaces: a container in a VM cannot share the host's network, IPC or
// processes, and running it with the guest's instead would break what it
// was promised (a host-network pod would get no network at all).
func refuseHostNamespaces(spec *specs.Spec) error {
	if spec.Linux == nil {
		return fmt.Errorf("spec.linux: missing, so every namespace would be the host's: a VM cannot honour that: %w", errdefs.ErrInvalidArgument)
	}
	for _, h := range hostNamespaces {
		found := false
		for _, ns := range spec.Linux.Namespaces {
			found = found || ns.Type == h.typ
		}
		if !found {
			return fmt.Errorf("spec.linux.namespaces: no %s namespace, so the container would use the host's (%s): a container in a VM cannot share the host's %s namespace: %w", h.typ, h.field, h.typ, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
