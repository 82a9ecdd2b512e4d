// containerd-shim-vc-v2 is the containerd runtime v2 shim of
// virtcontainers (runtime io.containerd.vc.v2, RuntimeClass handler vc):
// one shim process per pod, which runs the pod's VM and its containers.
package main

import (
	"context"

	cdshim "github.com/containerd/containerd/v2/pkg/shim"

	"github.com/virtcontainers/vc/internal/shim"
)

func main() {
	shim.Register()
	cdshim.RunShim(context.Background(), shim.NewManager(), func(c *cdshim.Config) {
		// The shim's children are its own (QEMU, binary:// loggers),
		// waited for by os/exec: the library's reaper would steal their
		// exit statuses.
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
