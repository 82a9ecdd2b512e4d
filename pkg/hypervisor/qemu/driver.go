package qemu

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// driver is the QEMU driver as pkg/hypervisor's registry knows it: a
// hypervisor.Driver, HostChecker and TemplateDriver.
type driver struct{}

var (
	_ hypervisor.Driver         = driver{}
	_ hypervisor.HostChecker    = driver{}
	_ hypervisor.TemplateDriver = driver{}
)

func (driver) Name() string { return backendName }

func (driver) New(cfg hypervisor.Config) (hypervisor.Hypervisor, error) { return newVM(cfg) }

func (driver) Attach(ctx context.Context, dir string) (hypervisor.Hypervisor, error) {
	return attachVM(ctx, dir)
}

func (driver) CheckHost(path string) hypervisor.HostReport { return checkHost(path) }

// HostFiles are the QEMU binary a VM of cfg runs and its firmware (the
// configured one, or defaultFirmware when it exists).
func (driver) HostFiles(cfg hypervisor.Config) (binary, firmware string, err error) {
	if binary, err = findQEMU(cfg.HypervisorPath); err != nil {
		return "", "", err
	}
	firmware = cfg.Firmware
	if firmware == "" {
		if _, err := os.Stat(defaultFirmware); err == nil {
			firmware = defaultFirmware
		}
	}
	return binary, firmware, nil
}

// RunningPid is the pid of the QEMU whose state directory is stateDir, if
// it runs: its pid file names it, and its command line names the
// directory (against a reused pid); 0 otherwise.
func (driver) RunningPid(stateDir string) int {
	b, err := os.ReadFile(filepath.Join(stateDir, pidFileName))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(cmdline), stateDir) {
		return 0
	}
	return pid
}

// Kill kills the QEMU whose state directory is stateDir, if it runs, and
// waits up to 2 s for it to go; then the shared mounts of a confined
// QEMU's exports (its record names them) go too.
func (d driver) Kill(stateDir string) {
	defer releaseRecordShares(stateDir)
	pid := d.RunningPid(stateDir)
	if pid == 0 {
		return
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err != nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// releaseRecordShares undoes the shared mounts of the exports of the
// confined QEMU recorded in stateDir, unless it still runs.
func releaseRecordShares(stateDir string) {
	b, err := os.ReadFile(filepath.Join(stateDir, recordName))
	if err != nil {
		return
	}
	var r vmRecord
	if json.Unmarshal(b, &r) != nil || len(r.SharedMounts) == 0 || (driver{}).RunningPid(stateDir) != 0 {
		return
	}
	releaseShares(r.SharedMounts)
}
