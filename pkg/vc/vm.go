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

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	_ "github.com/virtcontainers/vc/pkg/hypervisor/qemu" // the default backend
)

// hypervisorBackend is the backend sandboxes run on.
const hypervisorBackend = "qemu"

// startVM configures and starts the sandbox's VM, with the sandbox's shared
// directory exported over 9p and nics attached. A failed start leaves no
// process.
func startVM(ctx context.Context, dir, shared string, cfg SandboxConfig, nics []hypervisor.NIC, log *slog.Logger) (hypervisor.Hypervisor, error) {
	nat, err := cfg.natNIC()
	if err != nil {
		return nil, err
	}
	params := append([]string(nil), cfg.Hypervisor.KernelParams...)
	if cfg.Hypervisor.Debug {
		params = append(params, "vc_log=debug")
	}
	hc := hypervisor.Config{
		ID:             cfg.ID,
		StateDir:       filepath.Join(dir, "vm"),
		HypervisorPath: cfg.Hypervisor.Path,
		CPUs:           int(cfg.Hypervisor.CPUs),
		MemoryMiB:      int(cfg.Hypervisor.MemoryMiB),
		Kernel:         cfg.Hypervisor.Kernel,
		Initrd:         cfg.Hypervisor.Initrd,
		KernelParams:   strings.Join(params, " "),
		Accel:          cfg.Hypervisor.Accel,
		SharedFS:       []hypervisor.SharedFS{{Tag: sharedTag, HostPath: shared, Kind: hypervisor.FS9P}},
		NICs:           nics,
		NAT:            nat,
		Logger:         log,
		// Only the owner serves the agent: a VM whose owner died is
		// unreachable, so it goes too.
		DieWithParent: true,
	}
	vm, err := hypervisor.New(hypervisorBackend, hc)
	if err != nil {
		return nil, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, err
	}
	return vm, nil
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
