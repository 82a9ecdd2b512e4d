// Package vc is the virtcontainers library: sandboxes, one VM each, and
// the containers inside them.
//
// # A tour
//
// A guest image is a kernel and an initrd whose /init is vc-agent;
// pkg/guestimage builds one (`vc image build` does it for the CLI).
// CreateSandbox boots a VM from it, waits for the agent and sets the
// sandbox up:
//
//	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
//		ID:         "demo",
//		Hypervisor: vc.HypervisorConfig{Kernel: img.Kernel, Initrd: img.Initrd},
//	})
//
// Zero sizes mean pkg/hypervisor's defaults; zero Accel picks KVM where
// it works and QEMU's emulation (TCG) elsewhere. Without NetNS the
// sandbox gets a user-mode NAT (SandboxConfig.NAT); with it, every link of
// that network namespace becomes a NIC of the VM.
//
// A container is a host directory for its root filesystem and an OCI
// spec (pkg/oci.DefaultSpec makes a usual one). Sandbox.CreateContainer
// shares both into the guest; Sandbox.Container returns a handle for the
// rest: Start, Wait, Kill, Stop, Delete, Pause, Resume, Stats, Update, and
// the processes inside it (Exec, WaitProcess, SignalProcess, IOStream,
// CloseStdin, ResizeTerminal, ProcessList):
//
//	err = s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: dir, Spec: oci.DefaultSpec([]string{"echo", "hi"}, nil, "/", false)})
//	c := s.Container("c")
//	done := c.IOStream(ctx, "c", vc.IO{Stdout: os.Stdout})
//	err = c.Start(ctx)
//	code, err := c.Wait(ctx)
//	<-done
//	err = c.Delete(ctx)
//
// Stop powers the VM off and Delete removes what is left on the host:
//
//	err = s.Stop(ctx, 5*time.Second)
//	err = s.Delete(ctx)
//
// A container moves created -> running <-> paused -> stopped; an
// operation in a state it does not fit fails with errdefs'
// ErrFailedPrecondition naming the state, an unknown id with
// ErrNotFound, bad configuration with ErrInvalidArgument naming the
// field. Errors of the agent arrive as the same errdefs sentinels.
//
// # Sizing
//
// The VM is its configured size (the guest's own) plus what its workload
// may use: HypervisorConfig.SizeFor adds a pod's limits (or a lone
// container's) at boot, read from the booting container's spec by
// WorkloadFromSpec (sizing.go), a
// container joining grows the VM beyond them, and Container.Update
// grows or shrinks it with the container's limits, hotplugging vCPUs and
// memory within HypervisorConfig.MaxCPUs and MaxMemoryMiB (resize.go).
//
// # Starting from a template
//
// pkg/factory boots a VM once and saves it, paused, as a template (its
// RAM in a file, its device state beside it); a sandbox whose
// SandboxConfig.VMSource is that factory (factory.Use) resumes a
// copy-on-write copy of it instead of booting, or takes one the factory's
// cache started ahead of time. CreateSandbox asks the VMSource, when
// there is one, and boots otherwise; StartVM is the one way a VM starts,
// the sandbox's or the factory's.
//
// # Owners and other processes
//
// A Sandbox returned by CreateSandbox is owned by the calling process: it
// started the VM, holds the agent connection, notices when the VM dies,
// and serves the agent protocol on a unix socket in the sandbox's state
// directory, so that other processes (the next CLI invocation) reach the
// same sandbox through FetchSandbox. A fetched Sandbox drives the agent
// through that socket and the VM through its process id.
//
// A sandbox does not outlive its owner: once the owner has exited, nothing
// serves the agent, and the next look at the sandbox (FetchSandbox,
// StatusSandbox, ListSandbox) kills the VM, records the sandbox stopped
// ("owner process gone") and releases its host resources. A program that
// wants sandboxes to run after it exits keeps an owner process alive, as
// `vc run -d` and the containerd shim do.
//
// State lives under SandboxConfig.StateRoot (persist.DefaultRoot), one
// directory per sandbox, readable by root only.
package vc
