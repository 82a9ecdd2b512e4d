package hypervisor

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/containerd/errdefs"
)

// Driver is a hypervisor implementation. A driver package registers
// itself from init (import it for its side effect, as with database/sql
// drivers), so that sandbox code picks one by the name in its
// configuration and names no driver package.
//
// What a driver can do beyond making and finding VMs it says by
// implementing optional interfaces, found by type assertion: HostChecker
// (vc check), TemplateDriver (a factory's templates).
type Driver interface {
	// Name is what configurations call it ("qemu").
	Name() string
	// New configures a VM without starting it.
	New(cfg Config) (Hypervisor, error)
	// Attach finds a VM again, started by this or another process, from
	// its state directory. The VM must still be running: otherwise the
	// error wraps errdefs.ErrNotFound.
	Attach(ctx context.Context, stateDir string) (Hypervisor, error)
}

// HostChecker is a Driver that can say what this host offers its VMs.
type HostChecker interface {
	// CheckHost inspects the host for VMs of the hypervisor binary at
	// path ("" for the driver's default).
	CheckHost(path string) HostReport
}

// HostReport is what this host offers a driver, for `vc check`. The
// JSON names are vc check's, from when QEMU was the only driver.
type HostReport struct {
	// Path and Version are the hypervisor binary's; Error says why
	// there is none that runs.
	Path    string `json:"qemu_path"`
	Version string `json:"qemu_version"`
	Error   string `json:"qemu_error,omitempty"`
	// KVM tells whether VMs with accel auto run under KVM, and why.
	KVM       bool   `json:"kvm"`
	KVMReason string `json:"kvm_reason"`
	// VhostVsock tells whether the agent can use vsock (else virtio-serial).
	VhostVsock bool `json:"vhost_vsock"`
	// Firmware is the BIOS VMs boot with ("" for the hypervisor's own).
	Firmware string `json:"firmware,omitempty"`
	// UserNet tells whether the NAT of sandboxes without a network
	// namespace can run; UserNetPath is the user-mode network stack
	// found (passt), UserNetError why the NAT cannot run.
	UserNet      bool   `json:"user_net"`
	UserNetPath  string `json:"passt_path,omitempty"`
	UserNetError string `json:"user_net_error,omitempty"`
	// VMMUser is who the VMM runs as and how it is confined;
	// VMMUserError why VMs started by root cannot start confined.
	VMMUser      string `json:"vmm_user,omitempty"`
	VMMUserError string `json:"vmm_user_error,omitempty"`
	// Virtiofsd is the daemon virtio-fs shares would use;
	// VirtiofsdError why there is none (9p, the default, needs none).
	Virtiofsd      string `json:"virtiofsd,omitempty"`
	VirtiofsdError string `json:"virtiofsd_error,omitempty"`
}

// TemplateDriver is a Driver whose VMs can be saved as templates
// (Templater) and resumed (Config.RestoreState), and that tells a
// factory what its templates depend on and finds their VMs without a
// handle.
type TemplateDriver interface {
	// HostFiles are the files on the host a VM of cfg runs from, beyond
	// its kernel and initrd: the hypervisor's binary (cfg.HypervisorPath
	// or the driver's default, found in PATH) and the firmware ("" for
	// none). A template made with them is stale once they change.
	HostFiles(cfg Config) (binary, firmware string, err error)
	// RunningPid is the pid of the VM whose state directory is stateDir,
	// if it runs (checked against a reused pid); 0 otherwise.
	RunningPid(stateDir string) int
	// Kill kills the VM whose state directory is stateDir, if it runs,
	// and waits a while for it to go: for VMs nobody holds a handle of
	// (a template's that a crash left, a cache's).
	Kill(stateDir string)
}

// NotImplemented is the error of a driver lacking a capability: it names
// the driver and the capability, and wraps errdefs.ErrNotImplemented.
func NotImplemented(driver, capability string) error {
	return fmt.Errorf("hypervisor %s: %s: %w", driver, capability, errdefs.ErrNotImplemented)
}

var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes a driver available by its name. It panics on a
// duplicate or empty name, which are programming errors.
func Register(d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if d == nil || d.Name() == "" {
		panic("hypervisor: Register of a driver without a name")
	}
	if _, dup := drivers[d.Name()]; dup {
		panic("hypervisor: Register called twice for " + d.Name())
	}
	drivers[d.Name()] = d
}

// Lookup returns the driver of that name; the error wraps
// errdefs.ErrNotFound.
func Lookup(name string) (Driver, error) {
	driversMu.RLock()
	defer driversMu.RUnlock()
	d, ok := drivers[name]
	if !ok {
		return nil, fmt.Errorf("hypervisor driver %q (have %v; a program links a driver by importing its package): %w", name, driverNamesLocked(), errdefs.ErrNotFound)
	}
	return d, nil
}

// Drivers lists the registered driver names, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	return driverNamesLocked()
}

func driverNamesLocked() []string {
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New configures a VM with the named driver.
func New(driver string, cfg Config) (Hypervisor, error) {
	d, err := Lookup(driver)
	if err != nil {
		return nil, err
	}
	return d.New(cfg)
}

// Attach finds a running VM of the named driver from its state directory.
func Attach(ctx context.Context, driver, stateDir string) (Hypervisor, error) {
	d, err := Lookup(driver)
	if err != nil {
		return nil, err
	}
	return d.Attach(ctx, stateDir)
}

// CheckHost asks the named driver what this host offers its VMs; a
// driver that cannot say is NotImplemented.
func CheckHost(driver, path string) (HostReport, error) {
	d, err := Lookup(driver)
	if err != nil {
		return HostReport{}, err
	}
	c, ok := d.(HostChecker)
	if !ok {
		return HostReport{}, NotImplemented(driver, "host check")
	}
	return c.CheckHost(path), nil
}

// Templates is the named driver's TemplateDriver; a driver without
// templates is NotImplemented.
func Templates(driver string) (TemplateDriver, error) {
	d, err := Lookup(driver)
	if err != nil {
		return nil, err
	}
	t, ok := d.(TemplateDriver)
	if !ok {
		return nil, NotImplemented(driver, "templates")
	}
	return t, nil
}
