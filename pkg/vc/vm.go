package vc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	_ "github.com/virtcontainers/vc/pkg/hypervisor/qemu" // the default backend
)

// hypervisorBackend is the backend sandboxes run on.
const hypervisorBackend = "qemu"

// vmStart is how a sandbox's VM started.
type vmStart struct {
	vm hypervisor.Hypervisor
	// fromTemplate: the VM resumed a factory's template, here or (with
	// fromCache) in the factory's cache.
	fromTemplate, fromCache bool
	// dir holds the VM's state (vm/) and the shared directory (shared/):
	// the sandbox's own directory, or a cache's VM's.
	dir string
}

// startVM configures and starts the sandbox's VM in dir (the sandbox's
// directory), with the shared directory exported over 9p and nics
// attached: it boots, or, with cfg.Hypervisor.Factory, takes a VM from
// the factory's cache or resumes the factory's template. A failed start
// leaves no process.
func startVM(ctx context.Context, dir string, cfg SandboxConfig, nics []hypervisor.NIC, log *slog.Logger) (_ vmStart, err error) {
	nat, err := cfg.natNIC()
	if err != nil {
		return vmStart{}, err
	}
	var f *Factory
	if cfg.Hypervisor.Factory != "" {
		if f, err = OpenFactory(cfg.Hypervisor.Factory); err != nil {
			return vmStart{}, err
		}
		if err := f.Fits(cfg); err != nil {
			return vmStart{}, err
		}
		if len(nics) > factoryHotplugSlots {
			return vmStart{}, fmt.Errorf("factory %s: network namespace %s has %d links, more than the template's %d free slots for NICs: %w (%w)",
				f.dir, cfg.NetNS, len(nics), factoryHotplugSlots, ErrTemplateMismatch, errdefs.ErrFailedPrecondition)
		}
		// A cached VM's NAT forwards no ports, sends DNS to the
		// host's resolver and does not reach the host's loopback: a
		// sandbox asking otherwise starts its own.
		if len(cfg.NAT.Publish) == 0 && len(cfg.NAT.DNS) == 0 && !cfg.NAT.HostLoopback {
			vm, vmDir, err := takeCachedVM(ctx, f.dir, cfg.ID, log)
			if err == nil {
				if err := hotplugNICs(ctx, vm, nics); err != nil {
					killVM(vm)
					removeVMDir(vmDir)
					return vmStart{}, err
				}
				return vmStart{vm: vm, fromTemplate: true, fromCache: true, dir: vmDir}, nil
			}
			if !errdefs.IsNotFound(err) {
				log.Info("starting from the template, not the factory's cache", "why", err)
			}
		}
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		return vmStart{}, err
	}
	hc := vmConfig(cfg.ID, filepath.Join(dir, "vm"), shared, cfg.Hypervisor, nat, log)
	hc.NICs = nics
	if f == nil {
		cfg.Hypervisor.setResizeBounds(&hc)
	} else {
		f.restoreConfig(&hc)
		// The template has no NICs of a namespace: they are hotplugged
		// into the restored VM.
		hc.NICs = nil
	}
	vm, err := hypervisor.New(hypervisorBackend, hc)
	if err != nil {
		return vmStart{}, err
	}
	if err := vm.Start(ctx); err != nil {
		return vmStart{}, err
	}
	if f != nil {
		if err := hotplugNICs(ctx, vm, nics); err != nil {
			killVM(vm)
			return vmStart{}, err
		}
	}
	return vmStart{vm: vm, fromTemplate: f != nil, dir: dir}, nil
}

// hotplugNICs adds nics to a VM started from a template.
func hotplugNICs(ctx context.Context, vm hypervisor.Hypervisor, nics []hypervisor.NIC) error {
	for _, n := range nics {
		if err := vm.AddNIC(ctx, n); err != nil {
			return fmt.Errorf("hotplug nic %s into the vm started from the template: %w", n.ID, err)
		}
	}
	return nil
}

// vmConfig is the VM of a sandbox (and of a factory's template, which must
// have the same devices): hc's size, kernel and parameters, the shared
// directory over 9p, the NAT NIC when nat is set. NICs of a network
// namespace are the caller's to add.
func vmConfig(id, stateDir, shared string, h HypervisorConfig, nat *hypervisor.NATNIC, log *slog.Logger) hypervisor.Config {
	return hypervisor.Config{
		ID:             id,
		StateDir:       stateDir,
		HypervisorPath: h.Path,
		CPUs:           int(h.CPUs),
		MemoryMiB:      int(h.MemoryMiB),
		Kernel:         h.Kernel,
		Initrd:         h.Initrd,
		KernelParams:   strings.Join(h.kernelParams(), " "),
		Accel:          h.Accel,
		SharedFS:       []hypervisor.SharedFS{{Tag: sharedTag, HostPath: shared, Kind: hypervisor.FS9P}},
		NAT:            nat,
		Logger:         log,
		// Only the owner serves the agent: a VM whose owner died is
		// unreachable, so it goes too.
		DieWithParent: true,
	}
}

// kernelParams are the guest kernel's parameters beyond the backend's.
func (h HypervisorConfig) kernelParams() []string {
	// Hotplugged memory goes to the movable zone, whence the guest can
	// give it back when the VM shrinks (resize.go).
	params := append([]string{"memhp_default_state=online_movable"}, h.KernelParams...)
	if h.Debug {
		params = append(params, "vc_log=debug")
	}
	return params
}

// attachVM finds the VM of a sandbox started by another process.
func (s *Sandbox) attachVM(ctx context.Context) (hypervisor.Hypervisor, error) {
	return hypervisor.Attach(ctx, hypervisorBackend, filepath.Join(s.vmDir(), "vm"))
}

// killVM stops a VM at once.
func killVM(vm hypervisor.Hypervisor) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vm.Stop(ctx, 0)
}

// consoleTail returns the last lines of a console log, for errors.
func consoleTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no console log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func killPid(pid int) {
	unix.Kill(pid, unix.SIGKILL)
}
