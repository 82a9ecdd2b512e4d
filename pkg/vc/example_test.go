package vc_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// Run one command in a container in a new VM, print its output and exit
// code, and remove everything. It needs root, QEMU, a static vc-agent
// (make agent) and a directory holding the container's root filesystem
// (here a static busybox with its applets). test/e2e runs the same
// sequence against a real VM.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The guest: Debian's kernel and an initrd whose /init is the agent,
	// built once and cached by content.
	img, err := guestimage.Build(ctx, guestimage.Options{Agent: "bin/vc-agent"})
	if err != nil {
		log.Fatal(err)
	}
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID:         "example",
		Hypervisor: vc.HypervisorConfig{Kernel: img.Kernel, Initrd: img.Initrd},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		s.Stop(context.Background(), 5*time.Second)
		s.Delete(context.Background())
	}()

	spec := oci.DefaultSpec([]string{"uname", "-s"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: "/var/lib/vc/rootfs/busybox", Spec: spec}); err != nil {
		log.Fatal(err)
	}
	c := s.Container("c")
	streams := c.IOStream(ctx, c.ID(), vc.IO{Stdout: os.Stdout, Stderr: os.Stderr})
	if err := c.Start(ctx); err != nil {
		log.Fatal(err)
	}
	code, err := c.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	<-streams
	fmt.Println("exit code", code)
	if err := c.Delete(ctx); err != nil {
		log.Fatal(err)
	}
}
