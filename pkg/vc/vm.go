package vc

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/hostcgroup"
	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// DefaultBackend is the hypervisor backend a HypervisorConfig without
// Backend runs on. Backends register themselves (pkg/hypervisor's
// registry): a program links one in by importing its package for its side
// effect, as the front ends' main packages import pkg/hypervisor/qemu.
const DefaultBackend = "qemu"

// backend is the name of the hypervisor backend h runs on.
func (h HypervisorConfig) backend() string { return cmp.Or(h.Backend, DefaultBackend) }

// VMSource hands sandboxes VMs started for them instead of booting: a
// factory's template and its cache (pkg/factory). CreateSandbox asks the
// source of its SandboxConfig, when it has one, before it boots.
//
// A VM from a source is a copy of a saved one: the sandbox reseeds its
// random pool and sets its clock, and, on the NAT network, finds the
// NAT's guest side configured already.
type VMSource interface {
	// TakeVM returns a started VM for the sandbox spec describes, its
	// NICs (spec.NICs) attached; ok false when the source has none for
	// it (the sandbox then boots its own). An error fails the sandbox's
	// start; a failed TakeVM leaves no process.
	TakeVM(ctx context.Context, spec VMSpec) (vm SourcedVM, ok bool, err error)
}

// SourcedVM is a VM a VMSource handed out.
type SourcedVM struct {
	VM hypervisor.Hypervisor
	// Dir holds the VM's state (vm/) and its shared directory (shared/)
	// when they are not in VMSpec.Dir: it becomes the sandbox's, removed
	// with it.
	Dir string
	// FromCache: the VM was started ahead of time, in another process.
	FromCache bool
}

// VMSpec is a VM to start: a sandbox's, or a factory's (its template,
// the VMs its cache keeps ready). StartVM is the one way they start.
type VMSpec struct {
	// Config is the sandbox the VM is for: its ID names the VM, its
	// Hypervisor gives the VM's backend, size, kernel and parameters,
	// and its network (NetNS, NAT) whether the VM has the NAT NIC.
	Config SandboxConfig
	// Dir holds the VM's state (Dir/vm) and the directory shared with
	// the guest over 9p (Dir/shared, made by StartVM).
	Dir string
	// NICs are the NICs of the sandbox's network namespace.
	NICs []hypervisor.NIC
	// Configure, when set, changes the hypervisor's configuration before
	// the VM is made (a factory's template: its memory file, the state
	// it resumes).
	Configure func(*hypervisor.Config)
	// Cgroup, when set, is the host cgroup the VM starts in (the
	// sandbox's, SandboxConfig.Cgroup).
	Cgroup hypervisor.CgroupPlacer
	Log    *slog.Logger
}

// StartVM makes spec's VM and starts it. It returns once the hypervisor
// runs; the guest may still be booting (DialAgent waits for its agent).
// A failed start leaves no process.
func StartVM(ctx context.Context, spec VMSpec) (hypervisor.Hypervisor, error) {
	cfg := spec.Config
	nat, err := cfg.natNIC()
	if err != nil {
		return nil, err
	}
	shared := filepath.Join(spec.Dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil && !os.IsExist(err) {
		return nil, err
	}
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	hc := vmConfig(cfg.ID, filepath.Join(spec.Dir, "vm"), shared, cfg.Hypervisor, nat, log)
	hc.NICs = spec.NICs
	hc.Cgroup = spec.Cgroup
	if spec.Configure != nil {
		spec.Configure(&hc)
	}
	vm, err := hypervisor.New(cfg.Hypervisor.backend(), hc)
	if err != nil {
		return nil, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, err
	}
	return vm, nil
}

// vmStart is how a sandbox's VM started.
type vmStart struct {
	vm hypervisor.Hypervisor
	// fromSource: the VM came from cfg.VMSource (a factory's template),
	// started here or (with fromCache) ahead of time.
	fromSource, fromCache bool
	// dir holds the VM's state (vm/) and the shared directory (shared/):
	// the sandbox's own directory, or the source's VM's.
	dir string
}

// startVM starts the sandbox's VM in dir (the sandbox's directory), with
// the shared directory exported over 9p and nics attached: it takes one
// from cfg.VMSource, or boots. A failed start leaves no process.
// A VM is started in cg when set; one taken from a factory's cache
// (started ahead, elsewhere) is moved into it.
func startVM(ctx context.Context, dir string, cfg SandboxConfig, nics []hypervisor.NIC, cg *hostcgroup.Cgroup, log *slog.Logger) (vmStart, error) {
	spec := VMSpec{Config: cfg, Dir: dir, NICs: nics, Cgroup: placer(cg), Log: log}
	if cfg.VMSource != nil {
		v, ok, err := cfg.VMSource.TakeVM(ctx, spec)
		if err != nil {
			return vmStart{}, err
		}
		if ok {
			if v.FromCache && cg != nil {
				// Its memory charged so far stays where the cache
				// started it on cgroup v1 (hostcgroup's doc).
				if err := cg.Move(v.VM.Info().Pid); err != nil {
					killVM(v.VM)
					if v.Dir != "" {
						removeVMDir(v.Dir)
					}
					return vmStart{}, err
				}
			}
			return vmStart{vm: v.VM, fromSource: true, fromCache: v.FromCache, dir: cmp.Or(v.Dir, dir)}, nil
		}
	}
	spec.Configure = cfg.Hypervisor.setResizeBounds
	vm, err := StartVM(ctx, spec)
	if err != nil {
		return vmStart{}, err
	}
	return vmStart{vm: vm, dir: dir}, nil
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
		CPUs:           h.CPUs,
		MemoryMiB:      h.MemoryMiB,
		Kernel:         h.Kernel,
		Initrd:         h.Initrd,
		KernelParams:   strings.Join(h.kernelParams(), " "),
		Accel:          h.Accel,
		SharedFS:       []hypervisor.SharedFS{{Tag: sharedTag, HostPath: shared, Kind: sharedFSKind(h)}},
		NAT:            nat,
		NoBalloon:      h.NoBalloon,
		User:           h.User,
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
	return hypervisor.Attach(ctx, s.status.Config.Hypervisor.backend(), filepath.Join(s.vmDir(), "vm"))
}

// killVM stops a VM at once.
func killVM(vm hypervisor.Hypervisor) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vm.Stop(ctx, 0)
}

// removeVMDir removes a VM's directory (a sandbox's taken from a
// factory's cache), refusing to while something is mounted below it.
func removeVMDir(dir string) error {
	if err := mount.UnmountUnder(dir); err != nil {
		return fmt.Errorf("not removing %s: %w", dir, err)
	}
	return os.RemoveAll(dir)
}

// reseedGuest gives the guest's random pool fresh host entropy.
func reseedGuest(ctx context.Context, a pb.AgentServiceService) error {
	seed := make([]byte, 512)
	if _, err := rand.Read(seed); err != nil {
		return fmt.Errorf("reseed the guest's random pool: %w", err)
	}
	if _, err := a.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{Data: seed}); err != nil {
		return fmt.Errorf("agent ReseedRandomDev: %w", err)
	}
	return nil
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
