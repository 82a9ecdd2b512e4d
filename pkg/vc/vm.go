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

// startVM configures and starts the sandbox's VM, with the sandbox's shared
// directory exported over 9p and nics attached: it boots, or, with
// cfg.Hypervisor.Factory, resumes the factory's template (fromTemplate).
// A failed start leaves no process.
func startVM(ctx context.Context, dir, shared string, cfg SandboxConfig, nics []hypervisor.NIC, log *slog.Logger) (vm hypervisor.Hypervisor, fromTemplate bool, err error) {
	nat, err := cfg.natNIC()
	if err != nil {
		return nil, false, err
	}
	hc := vmConfig(cfg.ID, filepath.Join(dir, "vm"), shared, cfg.Hypervisor, nat, log)
	hc.NICs = nics
	if cfg.Hypervisor.Factory != "" {
		f, err := OpenFactory(cfg.Hypervisor.Factory)
		if err != nil {
			return nil, false, err
		}
		if err := f.Fits(cfg); err != nil {
			return nil, false, err
		}
		if len(nics) > factoryHotplugSlots {
			return nil, false, fmt.Errorf("factory %s: network namespace %s has %d links, more than the template's %d free slots for NICs: %w (%w)",
				f.dir, cfg.NetNS, len(nics), factoryHotplugSlots, ErrTemplateMismatch, errdefs.ErrFailedPrecondition)
		}
		f.restoreConfig(&hc)
		// The template has no NICs of a namespace: they are hotplugged
		// into the restored VM.
		hc.NICs = nil
		fromTemplate = true
	}
	vm, err = hypervisor.New(hypervisorBackend, hc)
	if err != nil {
		return nil, false, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, false, err
	}
	if fromTemplate {
		for _, n := range nics {
			if err := vm.AddNIC(ctx, n); err != nil {
				killVM(vm)
				return nil, false, fmt.Errorf("hotplug nic %s into the vm started from the template: %w", n.ID, err)
			}
		}
	}
	return vm, fromTemplate, nil
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
	params := append([]string(nil), h.KernelParams...)
	if h.Debug {
		params = append(params, "vc_log=debug")
	}
	return params
}

// attachVM finds the VM of a sandbox started by another process.
func attachVM(ctx context.Context, dir string) (hypervisor.Hypervisor, error) {
	return hypervisor.Attach(ctx, hypervisorBackend, filepath.Join(dir, "vm"))
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
