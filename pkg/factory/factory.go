// Package factory makes template VMs, booted once and saved, that
// sandboxes start from instead of booting, and keeps VMs of a template
// started ahead of time (the cache): a factory is a pkg/vc VMSource.
//
// A factory is a template VM, booted once and saved, that sandboxes start
// from instead of booting (Use sets a vc.SandboxConfig's VMSource). Init
// boots the guest image with its RAM in a file mapped shared (<dir>/memory),
// waits for the agent, pauses the VM and saves its device state
// (<dir>/state), then quits it: no process stays. A sandbox's VM then
// maps the memory file private (copy-on-write: the VMs of one template
// share its unwritten pages), loads the state and runs on from where the
// template stopped (with the NAT's guest side, the same in every sandbox,
// already configured), then gets its own identity: its own agent socket,
// shared directory and NAT stack (device backends, not in the state), a
// reseeded random pool (agent ReseedRandomDev), the host's time (agent
// SetGuestDateTime) and its hostname and shared mount (agent
// CreateSandbox, which the template never ran: a 9p export mounted in the
// guest would block the save).
//
// <dir>/manifest.json records what the template was made of (QEMU,
// firmware, kernel and initrd, which holds the agent: size, time, sha256)
// and its size and parameters, and the state file's sha256. Open
// refuses a template whose files are missing, truncated or changed
// (ErrTemplateInvalid), and Fits one made from other binaries or for
// another size or network than the sandbox's (ErrTemplateMismatch).
//
// The memory file must never be written in place while VMs use it: they
// map it private, and a page they have not written yet is the file's, so
// they would see the change (or SIGBUS past a truncation). Init
// and Destroy only create and unlink files; running VMs keep the
// unlinked file's pages.
//
// A template's VM has the NAT NIC (the default network), or, made with
// Config.NoNAT, no NIC: then it serves sandboxes without network and
// those joining a network namespace, whose NICs are hotplugged into the
// restored VM (into its free PCIe root ports: HotplugSlots).
package factory

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
)

// ErrTemplateInvalid: a factory's template is missing, damaged, or was
// made from binaries that have changed since; it must be made again
// (Init). Errors wrapping it also wrap errdefs.ErrDataLoss.
var ErrTemplateInvalid = errors.New("factory template unusable")

// ErrTemplateMismatch: a sandbox's configuration differs from the one its
// factory's template was made with. Errors wrapping it also wrap
// errdefs.ErrFailedPrecondition.
var ErrTemplateMismatch = errors.New("sandbox does not fit the factory's template")

// Files of a factory directory.
const (
	factoryManifestName = "manifest.json"
	factoryMemoryName   = "memory"
	factoryStateName    = "state"
	factoryVersion      = 2 // 2: a NAT template's guest has the NAT configured
)

// FileStamp identifies a file a template depends on.
type FileStamp struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	Inode   uint64    `json:"inode"`
	SHA256  string    `json:"sha256"`
}

// Manifest is what a template was made of and for.
type Manifest struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Backend is the hypervisor driver the template ran on; empty is
	// vc.DefaultBackend.
	Backend string `json:"backend,omitempty"`
	// QEMU is the hypervisor's binary, Firmware its firmware (the
	// driver's HostFiles; the JSON names are from when QEMU was the
	// only driver).
	QEMU         FileStamp `json:"qemu"`
	Firmware     FileStamp `json:"firmware,omitzero"`
	Kernel       FileStamp `json:"kernel"`
	Initrd       FileStamp `json:"initrd"`
	AgentVersion string    `json:"agent_version,omitempty"`
	CPUs         uint32    `json:"cpus"`
	MemoryMiB    uint32    `json:"memory_mib"`
	KernelParams []string  `json:"kernel_params,omitempty"`
	Debug        bool      `json:"debug,omitempty"`
	// Accel is the acceleration the template ran under (kvm or tcg):
	// its VMs must run under the same.
	Accel string `json:"accel"`
	// NAT: the template's VM has the NAT NIC, configured in the guest
	// (address, routes) as every sandbox's.
	NAT bool `json:"nat"`
	// State is the device state file.
	State FileStamp `json:"state"`
	// BootTime is how long the template's boot took, until its agent
	// answered.
	BootTime time.Duration `json:"boot_ns"`
}

// Config is what Init makes a template of.
type Config struct {
	// Hypervisor is the guest image, size and parameters (Factory is
	// ignored). Sandboxes fit the template when theirs are the same.
	Hypervisor vc.HypervisorConfig
	// NoNAT makes a template without the NAT NIC, for sandboxes joining
	// a network namespace (NICs hotplugged) or without network; by
	// default the template serves sandboxes on the NAT network.
	NoNAT bool
}

// HotplugSlots is the number of free PCIe root ports of a
// template's VM (and so of the VMs restored from it): room for the NICs
// of a network namespace, hotplugged, and disks later.
const HotplugSlots = 4

// Factory is a factory directory whose template was found whole.
type Factory struct {
	dir      string
	manifest Manifest
}

// Dir is the factory's directory.
func (f *Factory) Dir() string { return f.dir }

// Manifest is what the template was made of.
func (f *Factory) Manifest() Manifest { return f.manifest }

func templateInvalid(dir, format string, args ...any) error {
	return fmt.Errorf("factory %s: %s: %w (%w)", dir, fmt.Sprintf(format, args...), ErrTemplateInvalid, errdefs.ErrDataLoss)
}

// Open reads the factory in dir and checks its template: the
// memory file of the recorded size, the state file with its recorded
// sha256, and QEMU, firmware, kernel and initrd unchanged. No factory
// there is errdefs.ErrNotFound; a damaged or stale one ErrTemplateInvalid.
func Open(dir string) (*Factory, error) {
	dir = filepath.Clean(dir)
	b, err := os.ReadFile(filepath.Join(dir, factoryManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("factory %s: no template (vc factory init makes one): %w", dir, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, templateInvalid(dir, "manifest: %v", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, templateInvalid(dir, "manifest %s: %v", factoryManifestName, err)
	}
	if m.Version != factoryVersion {
		return nil, templateInvalid(dir, "manifest version %d, want %d", m.Version, factoryVersion)
	}
	mem := filepath.Join(dir, factoryMemoryName)
	st, err := os.Stat(mem)
	if err != nil {
		return nil, templateInvalid(dir, "memory file: %v", err)
	}
	if want := int64(m.MemoryMiB) << 20; st.Size() != want {
		return nil, templateInvalid(dir, "memory file %s is %d bytes, want %d (%d MiB)", mem, st.Size(), want, m.MemoryMiB)
	}
	state := filepath.Join(dir, factoryStateName)
	sum, size, err := hashFile(state)
	if err != nil {
		return nil, templateInvalid(dir, "state file: %v", err)
	}
	if size != m.State.Size || sum != m.State.SHA256 {
		return nil, templateInvalid(dir, "state file %s is %d bytes with sha256 %.12s, the template saved %d bytes with sha256 %.12s (truncated or overwritten)",
			state, size, sum, m.State.Size, m.State.SHA256)
	}
	for _, s := range []struct {
		what  string
		stamp FileStamp
	}{{"qemu", m.QEMU}, {"firmware", m.Firmware}, {"kernel", m.Kernel}, {"initrd", m.Initrd}} {
		if s.stamp.Path == "" {
			continue
		}
		if err := s.stamp.unchanged(); err != nil {
			return nil, templateInvalid(dir, "%s: %v", s.what, err)
		}
	}
	return &Factory{dir: dir, manifest: m}, nil
}

// Fits checks that a sandbox can start from the template: the same QEMU,
// kernel and initrd (by content), size, kernel parameters and
// acceleration, and the NAT network. Errors wrap ErrTemplateMismatch and
// name the field.
func (f *Factory) Fits(cfg vc.SandboxConfig) error {
	m := &f.manifest
	h := cfg.Hypervisor
	mismatch := func(field, format string, args ...any) error {
		return fmt.Errorf("factory %s: %s: %s: %w (%w)", f.dir, field, fmt.Sprintf(format, args...), ErrTemplateMismatch, errdefs.ErrFailedPrecondition)
	}
	cpus, err := hypervisor.CheckCPUs("hypervisor.cpus", uint64(h.CPUs))
	if err != nil {
		return err
	}
	mem, err := hypervisor.CheckMemoryMiB("hypervisor.memory_mib", uint64(h.MemoryMiB))
	if err != nil {
		return err
	}
	switch {
	case cpus != m.CPUs:
		return mismatch("hypervisor.cpus", "%d, the template has %d", cpus, m.CPUs)
	case mem != m.MemoryMiB:
		return mismatch("hypervisor.memory_mib", "%d, the template has %d", mem, m.MemoryMiB)
	case h.Debug != m.Debug || !slices.Equal(h.KernelParams, m.KernelParams):
		return mismatch("hypervisor.kernel_params", "%q (debug %v), the template's are %q (debug %v)", h.KernelParams, h.Debug, m.KernelParams, m.Debug)
	case h.Accel != "" && h.Accel != hypervisor.AccelAuto && h.Accel != m.Accel:
		return mismatch("hypervisor.accel", "%s, the template ran under %s", h.Accel, m.Accel)
	case !cfg.NATEnabled() && m.NAT:
		return mismatch("network", "the template's VM has the NAT NIC, for sandboxes on the NAT network (a template for network namespaces and none is made with NoNAT)")
	case cfg.NATEnabled() && !m.NAT:
		return mismatch("network", "the template's VM has no NAT NIC (made for network namespaces and none); this sandbox is on the NAT network")
	}
	backend := cmp.Or(h.Backend, vc.DefaultBackend)
	if want := m.backend(); backend != want {
		return mismatch("hypervisor.backend", "%s, the template ran on %s", backend, want)
	}
	td, err := hypervisor.Templates(backend)
	if err != nil {
		return err
	}
	binary, _, err := td.HostFiles(hypervisor.Config{HypervisorPath: h.Path})
	if err != nil {
		return fmt.Errorf("hypervisor.path: %w", err)
	}
	for _, s := range []struct {
		field, path string
		stamp       FileStamp
	}{{"hypervisor.path", binary, m.QEMU}, {"hypervisor.kernel", h.Kernel, m.Kernel}, {"hypervisor.initrd", h.Initrd, m.Initrd}} {
		if err := s.stamp.same(s.path); err != nil {
			return mismatch(s.field, "%v", err)
		}
	}
	return nil
}

// restoreConfig makes hc (a sandbox's VM, as vc.StartVM configures it)
// resume the template.
func (f *Factory) restoreConfig(hc *hypervisor.Config) {
	hc.MemoryFile = filepath.Join(f.dir, factoryMemoryName)
	hc.MemoryShared = false
	hc.RestoreState = filepath.Join(f.dir, factoryStateName)
	hc.Accel = f.manifest.Accel
	hc.HotplugSlots = HotplugSlots
}

// Init makes a template in dir (created; it must not hold one)
// of fc. It boots the
// VM, waits for its agent, saves it and quits it; the template is put in
// place only once whole, and a failure leaves neither files nor
// processes.
func Init(ctx context.Context, dir string, fc Config) (_ *Factory, err error) {
	h := fc.Hypervisor
	dir = filepath.Clean(dir)
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("factory dir %q: not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
	}
	h.Factory = ""
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, factoryManifestName)); err == nil {
		return nil, fmt.Errorf("factory %s: a template exists (destroy it first): %w", dir, errdefs.ErrAlreadyExists)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	// Made beside dir, renamed into place once whole.
	staging, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".new-")
	if err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	backend := cmp.Or(h.Backend, vc.DefaultBackend)
	td, err := hypervisor.Templates(backend)
	if err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	binary, firmware, err := td.HostFiles(hypervisor.Config{HypervisorPath: h.Path})
	if err != nil {
		return nil, fmt.Errorf("factory %s: hypervisor.path: %w", dir, err)
	}
	log := slog.Default().With("factory", dir)
	// The template has the sandboxes' devices: the shared directory's 9p
	// device (never mounted in the template's guest), the NAT NIC.
	spec := vc.VMSpec{
		Config: vc.SandboxConfig{ID: "factory-template", Hypervisor: h, NAT: vc.NATConfig{Disabled: fc.NoNAT}},
		Dir:    staging,
		Log:    log,
	}
	memFile := filepath.Join(staging, factoryMemoryName)
	spec.Configure = func(hc *hypervisor.Config) {
		hc.HotplugSlots = HotplugSlots
		hc.MemoryFile = memFile
		hc.MemoryShared = true
	}
	begin := time.Now()
	vm, err := vc.StartVM(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("factory %s: template vm: %w", dir, err)
	}
	tmpl, ok := vm.(hypervisor.Templater)
	if !ok {
		killVM(vm)
		return nil, fmt.Errorf("factory %s: %w", dir, hypervisor.NotImplemented(backend, "save a template"))
	}
	defer killVM(vm) // after the save, and on every failure
	client, _, err := vc.DialAgent(ctx, vm)
	if err != nil {
		return nil, fmt.Errorf("factory %s: template vm: %w", dir, err)
	}
	bootTime := time.Since(begin)
	agentVersion := ""
	if d, err := pb.NewAgentServiceClient(client).GetGuestDetails(ctx, &pb.GuestDetailsRequest{}); err == nil && d.AgentDetails != nil {
		agentVersion = d.AgentDetails.Version
	}
	if !fc.NoNAT {
		// The NAT's guest side is the same in every sandbox: set once
		// here, it is in every VM of the template.
		if err := vc.ConfigureGuestNAT(ctx, pb.NewAgentServiceClient(client)); err != nil {
			client.Close()
			return nil, fmt.Errorf("factory %s: template vm: %w", dir, err)
		}
	}
	client.Close()
	m := Manifest{
		Version:      factoryVersion,
		Created:      time.Now().UTC(),
		Backend:      h.Backend,
		AgentVersion: agentVersion,
		CPUs:         uint32(vmCPUs(h)),
		MemoryMiB:    uint32(vmMemory(h)),
		KernelParams: h.KernelParams,
		Debug:        h.Debug,
		Accel:        vm.Capabilities().Accel,
		NAT:          !fc.NoNAT,
		BootTime:     bootTime,
	}
	state := filepath.Join(staging, factoryStateName)
	if err := tmpl.SaveTemplate(ctx, state); err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	if err := vm.Stop(ctx, 0); err != nil {
		return nil, fmt.Errorf("factory %s: stop the template vm: %w", dir, err)
	}
	os.RemoveAll(filepath.Join(staging, "vm"))
	os.Remove(filepath.Join(staging, "shared"))
	// The guest's memory (its random pool among it) is nobody else's.
	if err := os.Chmod(memFile, 0o600); err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}

	stamps := []struct {
		dst  *FileStamp
		path string
	}{{&m.QEMU, binary}, {&m.Kernel, h.Kernel}, {&m.Initrd, h.Initrd}, {&m.State, state}}
	if firmware != "" {
		stamps = append(stamps, struct {
			dst  *FileStamp
			path string
		}{&m.Firmware, firmware})
	}
	for _, s := range stamps {
		if *s.dst, err = stampFile(s.path); err != nil {
			return nil, fmt.Errorf("factory %s: %w", dir, err)
		}
	}
	m.State.Path = "" // found in the directory, wherever it is
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(staging, factoryManifestName), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	// A directory left without a manifest (a crash) is replaced; one
	// another Init completed meanwhile is not.
	if _, err := os.Stat(filepath.Join(dir, factoryManifestName)); err == nil {
		return nil, fmt.Errorf("factory %s: a template was made meanwhile: %w", dir, errdefs.ErrAlreadyExists)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	if err := os.Rename(staging, dir); err != nil {
		return nil, fmt.Errorf("factory %s: %w", dir, err)
	}
	log.Info("template made", "boot", bootTime, "took", time.Since(begin))
	return &Factory{dir: dir, manifest: m}, nil
}

// Destroy removes the factory in dir and whatever a failed
// Init left beside it: it stops the factory's cache (and the VMs
// nobody took) and kills a template VM still running. VMs started from
// the template keep running: they hold their mapping of the memory file;
// so do VMs taken from the cache, whose directories (under
// <dir>/cache) stay until their sandboxes are removed.
func Destroy(dir string) error {
	dir = filepath.Clean(dir)
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := StopCache(ctx, dir); err != nil {
		errs = append(errs, err)
	}
	backend := backendIn(dir)
	leftovers, _ := filepath.Glob(dir + ".new-*")
	for _, d := range append(leftovers, dir) {
		killVMIn(backend, filepath.Join(d, "vm"))
		inUse, err := destroyCacheVMs(backend, filepath.Join(d, cacheDirName))
		if err != nil {
			errs = append(errs, err)
		}
		if inUse == 0 {
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, fmt.Errorf("factory %s: %w", dir, err))
			}
			continue
		}
		// Everything but the directories of sandboxes' VMs.
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if e.Name() == cacheDirName {
				continue
			}
			if err := os.RemoveAll(filepath.Join(d, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("factory %s: %w", dir, err))
			}
		}
		slog.Info("factory destroyed; directories of vms its cache handed out stay until their sandboxes are removed", "factory", dir, "vms", inUse)
	}
	return errors.Join(errs...)
}

// destroyCacheVMs kills the VMs of a cache (dir) that nobody took and
// removes their directories, and those of taken VMs that have ended and
// hold no mounts; it counts the others, which are sandboxes'.
func destroyCacheVMs(backend, dir string) (inUse int, err error) {
	ents, _ := os.ReadDir(dir)
	var errs []error
	for _, e := range ents {
		d := filepath.Join(dir, e.Name())
		_, err := os.Stat(filepath.Join(d, cacheTakenName))
		taken := err == nil
		if !taken {
			killVMIn(backend, filepath.Join(d, "vm"))
		}
		if mps, _ := mount.Under(d); len(mps) > 0 || (taken && vmPidIn(backend, filepath.Join(d, "vm")) > 0) {
			inUse++
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return inUse, errors.Join(errs...)
}

// backend is the driver the template ran on.
func (m *Manifest) backend() string { return cmp.Or(m.Backend, vc.DefaultBackend) }

// backendIn is the driver of the template in dir, as far as its manifest
// can be read (Destroy cleans up damaged ones too).
func backendIn(dir string) string {
	var m Manifest
	b, _ := os.ReadFile(filepath.Join(dir, factoryManifestName))
	json.Unmarshal(b, &m)
	return m.backend()
}

// vmPidIn is the pid of the VM of backend whose state directory is vmDir,
// if it runs; 0 otherwise (or when the driver cannot tell).
func vmPidIn(backend, vmDir string) int {
	td, err := hypervisor.Templates(backend)
	if err != nil {
		return 0
	}
	return td.RunningPid(vmDir)
}

// killVMIn kills the VM of backend whose state directory is vmDir (a
// template's or a cache's VM), if it runs, and waits for it to go.
func killVMIn(backend, vmDir string) {
	if td, err := hypervisor.Templates(backend); err == nil {
		td.Kill(vmDir)
	}
}

func vmCPUs(h vc.HypervisorConfig) uint32 {
	n, _ := hypervisor.CheckCPUs("", uint64(h.CPUs))
	return n
}

func vmMemory(h vc.HypervisorConfig) uint32 {
	n, _ := hypervisor.CheckMemoryMiB("", uint64(h.MemoryMiB))
	return n
}

// stampFile records path's identity and content hash.
func stampFile(path string) (FileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return FileStamp{}, err
	}
	sum, _, err := hashFile(path)
	if err != nil {
		return FileStamp{}, err
	}
	return FileStamp{Path: path, Size: st.Size(), ModTime: st.ModTime().UTC(), Inode: inode(st), SHA256: sum}, nil
}

// unchanged checks that the stamped file is still what it was: by its
// size, time and inode, and by its content when those moved.
func (s FileStamp) unchanged() error { return s.same(s.Path) }

// same checks that path has the stamped file's content: at once when it
// is the stamped file, untouched; by hashing it otherwise.
func (s FileStamp) same(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		// A device (/dev/zero) would be hashed for ever.
		return fmt.Errorf("%s: not a regular file", path)
	}
	if path == s.Path && st.Size() == s.Size && st.ModTime().Equal(s.ModTime) && inode(st) == s.Inode {
		return nil
	}
	if st.Size() != s.Size {
		return fmt.Errorf("%s is %d bytes, the template's %s was %d: another file", path, st.Size(), s.Path, s.Size)
	}
	sum, _, err := hashFile(path)
	if err != nil {
		return err
	}
	if sum != s.SHA256 {
		return fmt.Errorf("%s has sha256 %.12s, the template's %s had %.12s: another file", path, sum, s.Path, s.SHA256)
	}
	return nil
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Status describes a factory directory.
type Status struct {
	Dir string `json:"dir"`
	// Ready: the template is whole and current (Manifest is set).
	Ready    bool      `json:"ready"`
	Error    string    `json:"error,omitempty"`
	Manifest *Manifest `json:"manifest,omitempty"`
	// MemoryFileBytes is the template's memory file's size on disk
	// (allocated, not its apparent size); StateBytes its state file's.
	MemoryFileBytes int64 `json:"memory_file_bytes,omitempty"`
	StateBytes      int64 `json:"state_bytes,omitempty"`
}

// Inspect describes the factory in dir; no factory is
// errdefs.ErrNotFound, a damaged one is Ready false with the reason.
func Inspect(dir string) (Status, error) {
	st := Status{Dir: filepath.Clean(dir)}
	f, err := Open(dir)
	if errdefs.IsNotFound(err) {
		return st, err
	}
	if err != nil {
		st.Error = err.Error()
		return st, nil
	}
	st.Ready = true
	st.Manifest = &f.manifest
	if fi, err := os.Stat(filepath.Join(f.dir, factoryMemoryName)); err == nil {
		if s, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.MemoryFileBytes = s.Blocks * 512
		}
	}
	st.StateBytes = f.manifest.State.Size
	return st, nil
}

// Use makes cfg's VM start from the template of the factory in dir when
// cfg fits it: it sets cfg.VMSource (and cfg.Hypervisor.Factory, the
// record) and returns nil. Otherwise cfg is unchanged and the error says
// why: it wraps errdefs.ErrNotFound (no template there) or
// ErrTemplateMismatch (cfg does not fit it), after which a caller may boot
// instead, or ErrTemplateInvalid (a damaged or stale template: make it
// again).
func Use(cfg *vc.SandboxConfig, dir string) error {
	f, err := Open(dir)
	if err != nil {
		return err
	}
	if err := f.Fits(*cfg); err != nil {
		return err
	}
	cfg.Hypervisor.Factory = f.dir
	cfg.VMSource = f
	return nil
}

// Source is the factory in dir as a sandbox's vc.VMSource, opened only
// when the sandbox takes its VM: a missing, damaged or stale template, or
// one the sandbox does not fit, fails its CreateSandbox then. Set
// vc.HypervisorConfig.Factory to dir with it. Use checks at once.
func Source(dir string) vc.VMSource { return &Factory{dir: filepath.Clean(dir)} }

// TakeVM starts the VM of the sandbox spec describes from the template
// (checked again: it may have been made again or damaged since), or takes
// one the factory's cache started: the vc.VMSource of a sandbox that Use
// made start from the factory. It never answers none: a sandbox that
// does not fit the template fails (ErrTemplateMismatch).
func (f *Factory) TakeVM(ctx context.Context, spec vc.VMSpec) (vc.SourcedVM, bool, error) {
	cfg := spec.Config
	log := cmp.Or(spec.Log, slog.Default())
	// The template as it is now: made again or damaged since Use.
	f, err := Open(f.dir)
	if err != nil {
		return vc.SourcedVM{}, false, err
	}
	if err := f.Fits(cfg); err != nil {
		return vc.SourcedVM{}, false, err
	}
	if len(spec.NICs) > HotplugSlots {
		return vc.SourcedVM{}, false, fmt.Errorf("factory %s: network namespace %s has %d links, more than the template's %d free slots for NICs: %w (%w)",
			f.dir, cfg.NetNS, len(spec.NICs), HotplugSlots, ErrTemplateMismatch, errdefs.ErrFailedPrecondition)
	}
	// A cached VM's NAT forwards no ports, sends DNS to the host's
	// resolver and does not reach the host's loopback: a sandbox asking
	// otherwise starts its own.
	if len(cfg.NAT.Publish) == 0 && len(cfg.NAT.DNS) == 0 && !cfg.NAT.HostLoopback {
		vm, vmDir, err := takeCachedVM(ctx, f.dir, f.manifest.backend(), cfg.ID, log)
		if err == nil {
			if err := hotplugNICs(ctx, vm, spec.NICs); err != nil {
				killVM(vm)
				removeVMDir(vmDir)
				return vc.SourcedVM{}, false, err
			}
			return vc.SourcedVM{VM: vm, Dir: vmDir, FromCache: true}, true, nil
		}
		if !errdefs.IsNotFound(err) {
			log.Info("starting from the template, not the factory's cache", "why", err)
		}
	}
	// The template has no NICs of a namespace: they are hotplugged into
	// the restored VM.
	nics := spec.NICs
	spec.NICs = nil
	spec.Configure = f.restoreConfig
	vm, err := vc.StartVM(ctx, spec)
	if err != nil {
		return vc.SourcedVM{}, false, err
	}
	if err := hotplugNICs(ctx, vm, nics); err != nil {
		killVM(vm)
		return vc.SourcedVM{}, false, err
	}
	return vc.SourcedVM{VM: vm}, true, nil
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

// killVM stops a VM at once.
func killVM(vm hypervisor.Hypervisor) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vm.Stop(ctx, 0)
}
