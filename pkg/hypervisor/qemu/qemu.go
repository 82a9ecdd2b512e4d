// Package qemu is the QEMU backend of package hypervisor: q35, direct
// kernel boot, QMP for control and hotplug, TCG or KVM.
//
// A VM's files live in its Config.StateDir: qmp.sock and qmp-attach.sock
// (QMP for the starting process and for Attach), agent.sock (the host end
// of the agent's virtio-serial port), qemu.pid, console.log (the guest's
// ttyS0), qemu.log (QEMU's own stdout and stderr) and qemu-vm.json (what
// Attach needs to find the VM again from another process).
package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// backendName is the name the backend registers under.
const backendName = "qemu"

func init() { hypervisor.Register(driver{}) }

// defaultFirmware is the BIOS used when Config.Firmware is empty and the
// file exists (else QEMU's default, SeaBIOS). qboot boots Debian's
// compressed kernel about 0.2 s (4%) faster than SeaBIOS under TCG; with an
// uncompressed vmlinux (PVH entry) the two are even. Hotplug into the root
// ports works with both. To force SeaBIOS, set Config.Firmware to
// /usr/share/seabios/bios-256k.bin.
var defaultFirmware = "/usr/share/qemu/qboot.rom"

// Timeouts of the driver's own steps.
var (
	// qmpReadyTimeout bounds the wait for QEMU's QMP socket when Start's
	// context has no deadline.
	qmpReadyTimeout = 30 * time.Second
	// quitTimeout is how long QEMU gets to exit after "quit" before it
	// is killed.
	quitTimeout = 3 * time.Second
	// quitLostWait is how long QEMU gets to exit when "quit" failed (QMP
	// closed: QEMU may be exiting already) before it is killed.
	quitLostWait = 500 * time.Millisecond
	// killTimeout is how long a killed QEMU gets to disappear.
	killTimeout = 10 * time.Second
	// unplugTimeout bounds the wait for the guest to release a device
	// when the caller's context has no deadline.
	unplugTimeout = 30 * time.Second
)

// qemuVM is a QEMU virtual machine. It implements hypervisor.Hypervisor.
type qemuVM struct {
	id    string
	paths statePaths
	log   *slog.Logger

	// opMu serialises Start, Stop and device changes; mu guards the
	// fields and is never held across a wait.
	opMu sync.Mutex
	mu   sync.Mutex

	cfg       hypervisor.Config
	started   bool
	stopped   bool
	qemuPath  string
	accel     string
	transport string
	cid       uint32
	agentAddr string
	// noDataPort: an attached VM whose record names no data port.
	noDataPort bool
	slots      []string // root port i -> slot key of its device, "" free
	// user is the unprivileged user QEMU runs as (confine.go), "" when
	// it runs as its caller; sharedMounts the binds its exports were
	// given, undone when it is gone.
	user         string
	sharedMounts []string

	proc         *process
	stopHow      string // how the last Stop ended the VM, for tests
	releaseWatch func() // ends an attached VM's pid watch
	qmp          *qmp.Client
	events       chan struct{} // closed when the event loop ends
	passt        *sideProc     // the NAT NIC's network stack, nil without one
	virtiofsds   []*sideProc   // the virtio-fs shares' daemons (virtiofs.go)
}

// newVM configures a VM without starting it.
func newVM(cfg hypervisor.Config) (*qemuVM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Own copies of the device lists: Add* appends to them.
	cfg.SharedFS = append([]hypervisor.SharedFS(nil), cfg.SharedFS...)
	cfg.Disks = append([]hypervisor.Disk(nil), cfg.Disks...)
	cfg.NICs = append([]hypervisor.NIC(nil), cfg.NICs...)
	paths := pathsFor(cfg.StateDir)
	if len(paths.AttachQMP) > maxSocketPath {
		return nil, fmt.Errorf("vm %s: state dir %s is too long for unix socket paths in it (%d bytes at most): %w",
			cfg.ID, cfg.StateDir, maxSocketPath-len(attachQMPName)-1, errdefs.ErrInvalidArgument)
	}
	return &qemuVM{
		id:    cfg.ID,
		paths: paths,
		log:   cfg.Logger.With("vm", cfg.ID, "hypervisor", backendName),
		cfg:   cfg,
	}, nil
}

// ID is the VM's id.
func (v *qemuVM) ID() string { return v.id }

// ConsoleLog is the file the guest's serial console is written to.
func (v *qemuVM) ConsoleLog() string { return v.paths.Console }

// QEMULog is the file QEMU's own stdout and stderr go to.
func (v *qemuVM) QEMULog() string { return v.paths.Log }

// QMP is the VM's QMP client, nil before Start; for diagnostics and tests.
func (v *qemuVM) QMP() *qmp.Client {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmp
}

// Pid is QEMU's process id, 0 before Start.
func (v *qemuVM) Pid() int {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.getPid()
}

// Exited is closed when QEMU has gone. Before Start it is a channel that
// closes only if the VM is started and then exits.
func (v *qemuVM) Exited() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		v.proc = newPendingProcess()
	}
	return v.proc.exited
}

// ExitError is nil while QEMU runs (or before Start). Once it has exited
// it says how, with the tails of the console log and of QEMU's log.
func (v *qemuVM) ExitError() error {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil || !p.hasExited() {
		return nil
	}
	return fmt.Errorf("vm %s: qemu %s%s", v.id, p.status(), v.logTails())
}

// Info is what the VM is now.
func (v *qemuVM) Info() hypervisor.Info {
	return hypervisor.Info{Pid: v.Pid(), AgentAddress: v.AgentAddress(), ConsoleLog: v.ConsoleLog(), ExitError: v.ExitError()}
}

// AgentAddress is how the host reaches the agent; empty before Start.
func (v *qemuVM) AgentAddress() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.agentAddr
}

// DataAddress is the stdio data port's unix socket
// (hypervisor.DataAddresser); empty before Start and with vsock, whose
// VMs have no virtio-serial controller.
func (v *qemuVM) DataAddress() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.transport == hypervisor.TransportVsock || v.agentAddr == "" || v.noDataPort {
		return ""
	}
	return v.paths.Data
}

// Capabilities says what the VM can do.
func (v *qemuVM) Capabilities() hypervisor.Capabilities {
	v.mu.Lock()
	defer v.mu.Unlock()
	hotplug := v.cfg.HotplugSlots > 0
	transport, accel := v.transport, v.accel
	if transport == "" {
		transport = v.cfg.AgentTransport
	}
	if accel == "" {
		accel = v.cfg.Accel
	}
	return hypervisor.Capabilities{
		BlockHotplug:   hotplug,
		NetHotplug:     hotplug,
		FSHotplug:      false, // QMP has no fsdev_add
		Pause:          true,
		CPUHotplug:     v.cfg.MaxCPUs > v.cfg.FixedCPUs,
		CPUUnplug:      v.cfg.MaxCPUs > v.cfg.FixedCPUs && accel == hypervisor.AccelKVM,
		MemoryHotplug:  v.cfg.MaxMemoryMiB > v.cfg.FixedMemoryMiB,
		SharedFS:       []hypervisor.FSKind{hypervisor.FS9P, hypervisor.FSVirtioFS},
		AgentTransport: transport,
		Accel:          accel,
	}
}

// Start launches QEMU and returns once QMP answers (the guest then boots).
func (v *qemuVM) Start(ctx context.Context) (err error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	started := v.started
	v.mu.Unlock()
	if started {
		return fmt.Errorf("vm %s: already started: %w", v.id, errdefs.ErrFailedPrecondition)
	}
	begin := time.Now()
	plan, files, err := v.prepare()
	if err != nil {
		return err
	}
	// Our copies of descriptors handed to QEMU go once it has its own.
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	args := plan.commandLine()

	// The NAT NIC's stack listens before QEMU connects to it; every
	// failure until QEMU runs stops it here, later ones with QEMU.
	var passt *sideProc
	if n := plan.cfg.NAT; n != nil {
		if passt, err = startPasst(ctx, v.id, n, v.cfg.StateDir, v.cfg.DieWithParent, v.cfg.Cgroup); err != nil {
			v.removeSockets()
			return err
		}
		defer func() {
			if err != nil {
				passt.stop()
			}
		}()
	}

	// The virtio-fs shares' daemons, likewise (virtiofs.go).
	virtiofsds, vfsBound, err := startVirtioFS(ctx, v.id, &plan.cfg)
	if err != nil {
		v.removeSockets()
		return err
	}
	defer func() {
		if err != nil {
			stopSides(virtiofsds)
			releaseShares(vfsBound)
		}
	}()

	logf, err := os.OpenFile(v.paths.Log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	defer logf.Close()
	cmd := exec.Command(v.qemuPath, args...)
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if v.cfg.DieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	var confine func() error
	if c := plan.conf; c != nil {
		if err = c.prepareHost(&plan.cfg, v.paths); err != nil {
			v.removeSockets()
			return fmt.Errorf("vm %s: %w", v.id, err)
		}
		defer func() {
			if err != nil {
				releaseShares(c.bound)
			}
		}()
		c.apply(cmd.SysProcAttr)
		cmd.Env = c.env()
		confine = c.prepareThread
	}
	v.log.Debug("starting qemu", "path", v.qemuPath, "args", strings.Join(args, " "), "user", plan.user())
	release := make(chan struct{})
	restoreCore := func() {}
	if confine != nil {
		// No core dump: it would hold the guest's memory. A QEMU of
		// another user may not be given limits without
		// CAP_SYS_RESOURCE: it inherits ours, lowered for the fork.
		restoreCore = noCoreDumps()
	}
	err = startCmdIn(cmd, v.cfg.Cgroup, v.cfg.DieWithParent, release, confine)
	restoreCore()
	if err != nil {
		v.removeSockets()
		return fmt.Errorf("vm %s: start %s: %w", v.id, v.qemuPath, err)
	}
	proc := v.adoptChild(cmd)
	go func() { <-v.Exited(); close(release) }()
	if confine != nil {
		err = mountProcSelf(cmd.Process.Pid)
		if err == nil {
			err = os.WriteFile(v.paths.Pid, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
		}
		if err != nil {
			proc.kill()
			proc.wait(killTimeout)
			v.removeSockets()
			return fmt.Errorf("vm %s: %w", v.id, err)
		}
	}
	// No core dump: it would hold the guest's memory. (Set once QEMU
	// runs: exec.Cmd has no rlimits; it has not crashed by then.)
	if confine == nil {
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil); err != nil {
			v.log.Warn("qemu: core dumps stay allowed", "err", err)
		}
	}
	v.mu.Lock()
	v.started = true
	v.accel, v.transport, v.cid = plan.accel, plan.transport, plan.cid
	v.slots = plan.slots
	v.agentAddr = agentAddress(plan)
	v.user = plan.user()
	v.sharedMounts = vfsBound
	if plan.conf != nil {
		v.sharedMounts = append(v.sharedMounts, plan.conf.bound...)
	}
	v.passt = passt
	v.virtiofsds = virtiofsds
	v.mu.Unlock()

	// From here on a failure must not leave QEMU behind.
	defer func() {
		if err != nil {
			proc.kill()
			proc.wait(killTimeout)
			v.closeQMP()
			v.removeSockets()
			os.Remove(v.paths.Record)
		}
	}()

	q, err := v.waitQMP(ctx, proc)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.qmp = q
	v.mu.Unlock()
	v.startEventLoop(q, proc)
	if plan.cfg.RestoreState != "" {
		if err := restoreTemplate(ctx, q, plan.cfg.RestoreState, proc.exited); err != nil {
			proc.wait(time.Second) // QEMU exits when the load fails: let the log say why
			return fmt.Errorf("vm %s: start from template: %w%s", v.id, err, v.logTails())
		}
	}
	if err := v.saveRecord(); err != nil {
		return fmt.Errorf("vm %s: %w", v.id, err)
	}
	v.log.Info("vm started", "pid", proc.getPid(), "accel", plan.accel, "agent", v.AgentAddress(), "user", plan.user(), "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// prepare checks the inputs, resolves acceleration and transport, and
// returns the plan and the files QEMU inherits (ExtraFiles, fd 3 on).
func (v *qemuVM) prepare() (*launchPlan, []*os.File, error) {
	cfg := v.configCopy()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("vm %s: state dir: %w", v.id, err)
	}
	if err := checkInputs(&cfg); err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	qemuPath, accel, err := v.resolveHost(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	v.qemuPath = qemuPath
	transport, err := chooseTransport(cfg.AgentTransport)
	if err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	conf, err := planConfinement(&cfg, qemuPath)
	if err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	plan := &launchPlan{
		cfg:       cfg,
		paths:     v.paths,
		accel:     accel,
		transport: transport,
		vhostFD:   -1,
		tapFDs:    map[string][]int{},
		vhostNet:  accel == hypervisor.AccelKVM && haveVhostNet(),
		slots:     planSlots(cfg),
		conf:      conf,
	}
	files, err := plan.passFiles()
	if err != nil {
		return nil, nil, fmt.Errorf("vm %s: %w", v.id, err)
	}
	v.resetFiles()
	return plan, files, nil
}

// configCopy is the VM's configuration, its device lists copied.
func (v *qemuVM) configCopy() hypervisor.Config {
	v.mu.Lock()
	defer v.mu.Unlock()
	cfg := v.cfg
	cfg.SharedFS = append([]hypervisor.SharedFS(nil), v.cfg.SharedFS...)
	cfg.Disks = append([]hypervisor.Disk(nil), v.cfg.Disks...)
	cfg.NICs = append([]hypervisor.NIC(nil), v.cfg.NICs...)
	return cfg
}

// mustExist checks that path exists and is a directory or not, as dir
// says; what names it in the error.
func mustExist(what, path string, dir bool) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s does not exist: %w", what, path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if st.IsDir() != dir {
		kind := "a file"
		if dir {
			kind = "a directory"
		}
		return fmt.Errorf("%s %s is not %s: %w", what, path, kind, errdefs.ErrInvalidArgument)
	}
	return nil
}

// checkInputs checks the files cfg names (kernel, initrd, firmware,
// shared directories, the template to restore, disks) and sets the
// firmware to defaultFirmware when none is configured and it exists.
func checkInputs(cfg *hypervisor.Config) error {
	if err := mustExist("kernel", cfg.Kernel, false); err != nil {
		return err
	}
	if cfg.Initrd != "" {
		if err := mustExist("initrd", cfg.Initrd, false); err != nil {
			return err
		}
	}
	if cfg.Firmware != "" {
		if err := mustExist("firmware", cfg.Firmware, false); err != nil {
			return err
		}
	} else if _, err := os.Stat(defaultFirmware); err == nil {
		cfg.Firmware = defaultFirmware
	}
	for _, fs := range cfg.SharedFS {
		if err := mustExist("shared directory "+fs.Tag, fs.HostPath, true); err != nil {
			return err
		}
	}
	if err := checkVirtioFS(cfg); err != nil {
		return err
	}
	if cfg.RestoreState != "" {
		if err := checkRestoreInputs(cfg.MemoryFile, cfg.MemoryMiB, cfg.RestoreState); err != nil {
			return err
		}
	}
	for _, d := range cfg.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("disk %s: %w (%w)", d.ID, err, errdefs.ErrNotFound)
		}
	}
	return nil
}

// resolveHost finds the QEMU binary and the acceleration the VM runs
// under (probing KVM, through the verdict cache, for accel auto).
func (v *qemuVM) resolveHost(cfg hypervisor.Config) (qemuPath, accel string, err error) {
	if qemuPath, err = findQEMU(cfg.HypervisorPath); err != nil {
		return "", "", err
	}
	cacheDir := ""
	if cfg.Accel == hypervisor.AccelAuto {
		cacheDir = probeCacheDir()
	}
	if accel, err = resolveAccel(cfg.Accel, qemuPath, cacheDir, v.log); err != nil {
		return "", "", err
	}
	return qemuPath, accel, nil
}

// chooseTransport is the agent transport of a VM configured with want.
func chooseTransport(want string) (string, error) {
	switch want {
	case hypervisor.TransportVsock:
		if !haveVhostVsock() {
			return "", fmt.Errorf("agent transport vsock: no usable %s: %w", vhostVsockDevice, errdefs.ErrFailedPrecondition)
		}
		return hypervisor.TransportVsock, nil
	case hypervisor.TransportAuto:
		if haveVhostVsock() {
			return hypervisor.TransportVsock, nil
		}
		return hypervisor.TransportVirtioSerial, nil
	case hypervisor.TransportVirtioSerial:
		return hypervisor.TransportVirtioSerial, nil
	}
	return "", fmt.Errorf("agent transport %s is not supported by the qemu backend: %w", want, errdefs.ErrNotImplemented)
}

// passFiles opens the files QEMU inherits (fd 3 on): the vhost-vsock
// device with the guest's CID, duplicates of the NICs' tap files. It
// records their fds in the plan; on error it closes those it opened.
func (p *launchPlan) passFiles() ([]*os.File, error) {
	var files []*os.File
	if p.transport == hypervisor.TransportVsock {
		f, cid, err := allocateCID()
		if err != nil {
			return nil, err
		}
		p.cid = cid
		p.vhostFD = 3 + len(files)
		files = append(files, f)
	}
	for _, n := range p.cfg.NICs {
		for _, tf := range n.TapFiles {
			// A duplicate, so that the caller may close its own.
			fd, err := unix.FcntlInt(tf.Fd(), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				for _, f := range files {
					f.Close()
				}
				return nil, fmt.Errorf("nic %s: dup tap fd: %w", n.ID, err)
			}
			p.tapFDs[n.ID] = append(p.tapFDs[n.ID], 3+len(files))
			files = append(files, os.NewFile(uintptr(fd), "tap-"+n.ID))
		}
	}
	return files, nil
}

// planSlots lays out the PCIe root ports: cold-plugged disks and NICs
// get a port each, so they can be removed later; then the spare ports
// for hotplug.
func planSlots(cfg hypervisor.Config) []string {
	var slots []string
	for _, d := range cfg.Disks {
		slots = append(slots, diskSlotKey(d.ID))
	}
	for _, n := range cfg.NICs {
		slots = append(slots, nicSlotKey(n.ID))
	}
	for i := 0; i < cfg.HotplugSlots; i++ {
		slots = append(slots, "")
	}
	return slots
}

// resetFiles removes a previous run's sockets and makes the console log
// afresh: QEMU creates it with its umask (0644 here); made first, it
// keeps 0600: the guest's console is nobody else's.
func (v *qemuVM) resetFiles() {
	v.removeSockets()
	os.Remove(v.paths.Console)
	if f, err := os.OpenFile(v.paths.Console, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
		f.Close()
	}
}

func agentAddress(p *launchPlan) string {
	if p.transport == hypervisor.TransportVsock {
		return fmt.Sprintf("vsock://%d:%d", p.cid, hypervisor.AgentVsockPort)
	}
	return "unix://" + p.paths.Agent
}

// findQEMU resolves the QEMU binary: the configured one, or
// qemu-system-x86_64 on $PATH.
func findQEMU(configured string) (string, error) {
	name := configured
	if name == "" {
		name = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("qemu binary: %w (%w)", err, errdefs.ErrNotFound)
	}
	return p, nil
}

// waitQMP connects to QEMU's QMP socket as soon as it exists, failing
// early when QEMU exits.
func (v *qemuVM) waitQMP(ctx context.Context, proc *process) (*qmp.Client, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, qmpReadyTimeout)
		defer cancel()
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 10*time.Millisecond) {
		select {
		case <-proc.exited:
			return nil, fmt.Errorf("vm %s: qemu %s while starting%s", v.id, proc.status(), v.logTails())
		default:
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		q, err := qmp.Dial(dctx, v.paths.QMP, v.log)
		cancel()
		if err == nil {
			return q, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("vm %s: waiting for qmp: %w%s", v.id, ctx.Err(), v.logTails())
		}
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ECONNREFUSED) {
			// QEMU exiting mid-handshake shows as a reset: look again.
			select {
			case <-proc.exited:
				return nil, fmt.Errorf("vm %s: qemu %s while starting%s", v.id, proc.status(), v.logTails())
			case <-time.After(10 * time.Millisecond):
			}
			v.log.Debug("qmp not ready", "err", err)
		}
		select {
		case <-proc.exited:
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// startEventLoop consumes QMP events: it logs them, and kills a VM that
// stopped on an internal error (a KVM emulation failure leaves QEMU
// paused forever, which is worse than dead).
func (v *qemuVM) startEventLoop(q *qmp.Client, proc *process) {
	done := make(chan struct{})
	v.mu.Lock()
	v.events = done
	v.mu.Unlock()
	go func() {
		defer close(done)
		for ev := range q.Events() {
			switch ev.Name {
			case "SHUTDOWN":
				v.log.Info("guest shut down", "data", string(ev.Data))
			case "STOP":
				go v.checkStopped(q, proc)
			default:
				v.log.Debug("qmp event", "event", ev.Name, "data", string(ev.Data))
			}
		}
	}()
}

func (v *qemuVM) checkStopped(q *qmp.Client, proc *process) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := q.QueryStatus(ctx)
	if err != nil {
		return
	}
	switch st.Status {
	case "internal-error", "guest-panicked", "io-error":
		v.log.Error("vm stopped on an error: killing it", "status", st.Status, "console", tailFile(v.paths.Console, 10, 1024), "qemu", tailFile(v.paths.Log, 5, 1024))
		proc.kill()
	}
}

// Stop shuts the VM down: ACPI power button, up to grace for the guest to
// go, then QMP quit, then SIGKILL.
func (v *qemuVM) Stop(ctx context.Context, grace time.Duration) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	proc, q, started, stopped := v.proc, v.qmp, v.started, v.stopped
	v.mu.Unlock()
	if stopped {
		return nil
	}
	if !started || proc == nil {
		v.mu.Lock()
		v.stopped = true
		v.mu.Unlock()
		return nil
	}
	begin := time.Now()
	how := "already exited"
	if !proc.hasExited() {
		how = v.shutdown(ctx, grace, proc, q)
	}
	if !proc.hasExited() {
		return fmt.Errorf("vm %s: qemu (pid %d) survived SIGKILL for %s: %w", v.id, proc.getPid(), killTimeout, errdefs.ErrUnavailable)
	}
	v.closeQMP()
	// passt ends once QEMU closed its socket; a stuck one is killed.
	v.mu.Lock()
	passt, virtiofsds := v.passt, v.virtiofsds
	v.passt, v.virtiofsds = nil, nil
	v.mu.Unlock()
	passt.wait(killTimeout)
	for _, p := range virtiofsds {
		p.wait(killTimeout)
	}
	v.releaseShares()
	v.removeSockets()
	os.Remove(v.paths.Pid)
	os.Remove(v.paths.Record)
	v.mu.Lock()
	v.stopped = true
	v.stopHow = how
	v.mu.Unlock()
	v.log.Info("vm stopped", "how", how, "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

func (v *qemuVM) shutdown(ctx context.Context, grace time.Duration, proc *process, q *qmp.Client) string {
	if q != nil && grace > 0 && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := q.SystemPowerdown(pctx)
		cancel()
		if err != nil {
			v.log.Debug("system_powerdown", "err", err)
		} else {
			t := time.NewTimer(grace)
			select {
			case <-proc.exited:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			if proc.hasExited() {
				return "guest powered off"
			}
			v.log.Info("guest did not power off in time: quitting qemu", "grace", grace)
		}
	}
	if q != nil && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, quitTimeout)
		err := q.Quit(qctx)
		cancel()
		if err == nil && proc.wait(quitTimeout) {
			return "qmp quit"
		}
		// QEMU exiting on its own (the guest powering off as the agent
		// was told to) closes QMP under the quit: expected, and quiet.
		if err != nil && proc.wait(quitLostWait) {
			v.log.Debug("qmp quit: qemu exited meanwhile", "err", err)
			return "exited"
		}
		v.log.Warn("qemu did not quit: killing it", "err", err)
	}
	proc.kill()
	proc.wait(killTimeout)
	return "killed"
}

// releaseShares undoes, once QEMU is gone, the binds a confined QEMU's
// 9p exports and virtio-fs shares were given (confine.go, virtiofs.go).
func (v *qemuVM) releaseShares() {
	v.mu.Lock()
	dirs := v.sharedMounts
	v.sharedMounts = nil
	v.mu.Unlock()
	releaseShares(dirs)
}

// Close releases the QMP connection and, for an attached VM, the pid
// watch; the VM keeps running. Starting QEMU did not tie it to this
// process (unless Config.DieWithParent), so a caller may Close and exit.
func (v *qemuVM) Close() error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.closeQMP()
	v.mu.Lock()
	v.qmp = nil
	release := v.releaseWatch
	v.releaseWatch = nil
	v.mu.Unlock()
	if release != nil {
		release()
	}
	return nil
}

// Pause freezes the vCPUs.
func (v *qemuVM) Pause(ctx context.Context) error {
	q, err := v.running()
	if err != nil {
		return err
	}
	if err := q.Stop(ctx); err != nil {
		return fmt.Errorf("vm %s: pause: %w", v.id, err)
	}
	return nil
}

// Resume lets the vCPUs run again.
func (v *qemuVM) Resume(ctx context.Context) error {
	q, err := v.running()
	if err != nil {
		return err
	}
	if err := q.Cont(ctx); err != nil {
		return fmt.Errorf("vm %s: resume: %w", v.id, err)
	}
	return nil
}

// State asks QEMU what the VM is doing.
func (v *qemuVM) State(ctx context.Context) (hypervisor.State, error) {
	v.mu.Lock()
	started, proc, q := v.started, v.proc, v.qmp
	v.mu.Unlock()
	switch {
	case !started:
		return hypervisor.StateCreated, nil
	case proc == nil || proc.hasExited() || q == nil:
		return hypervisor.StateStopped, nil
	}
	st, err := q.QueryStatus(ctx)
	if err != nil {
		if proc.hasExited() || errors.Is(err, qmp.ErrClosed) {
			return hypervisor.StateStopped, nil
		}
		return "", fmt.Errorf("vm %s: %w", v.id, err)
	}
	switch st.Status {
	case "running":
		return hypervisor.StateRunning, nil
	case "shutdown", "internal-error", "guest-panicked", "io-error":
		// About to exit, or about to be killed by the event loop.
		return hypervisor.StateStopped, nil
	default: // paused, suspended, debug, prelaunch, ...
		return hypervisor.StatePaused, nil
	}
}

// running returns the QMP client of a started, live VM.
func (v *qemuVM) running() (*qmp.Client, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.started || v.qmp == nil {
		return nil, fmt.Errorf("vm %s: not started: %w", v.id, errdefs.ErrFailedPrecondition)
	}
	if v.proc.hasExited() {
		return nil, fmt.Errorf("vm %s: qemu has exited: %w", v.id, errdefs.ErrFailedPrecondition)
	}
	return v.qmp, nil
}

func (v *qemuVM) closeQMP() {
	v.mu.Lock()
	q, events := v.qmp, v.events
	v.mu.Unlock()
	if q != nil {
		q.Close()
	}
	if events != nil {
		<-events
	}
}

func (v *qemuVM) removeSockets() {
	os.Remove(v.paths.QMP)
	os.Remove(v.paths.AttachQMP)
	os.Remove(v.paths.Agent)
	os.Remove(v.paths.Data)
	os.Remove(v.paths.Passt)
}

// logTails renders the ends of the console and QEMU logs for an error.
func (v *qemuVM) logTails() string {
	var b strings.Builder
	if t := tailFile(v.paths.Log, 15, 2048); t != "" {
		fmt.Fprintf(&b, "\n--- qemu log (%s), last lines:\n%s", v.paths.Log, t)
	}
	if t := tailFile(v.paths.Console, 20, 3072); t != "" {
		fmt.Fprintf(&b, "\n--- console (%s), last lines:\n%s", v.paths.Console, t)
	}
	return b.String()
}

// tailFile returns up to the last n lines of the last max bytes of path.
func tailFile(path string, n, max int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - int64(max)
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	k, _ := f.ReadAt(buf, off)
	s := strings.TrimRight(strings.ReplaceAll(string(buf[:k]), "\r", ""), "\n")
	lines := strings.Split(s, "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // a partial first line
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The VM does every optional capability of pkg/hypervisor.
var (
	_ hypervisor.Hypervisor    = (*qemuVM)(nil)
	_ hypervisor.Detacher      = (*qemuVM)(nil)
	_ hypervisor.Pauser        = (*qemuVM)(nil)
	_ hypervisor.Unplugger     = (*qemuVM)(nil)
	_ hypervisor.StateReporter = (*qemuVM)(nil)
	_ hypervisor.Templater     = (*qemuVM)(nil)
	_ hypervisor.Resizer       = (*qemuVM)(nil)
)

// startCmd starts cmd. With dieWithParent, it starts it from a goroutine
// locked to its OS thread that lives until release is closed (when the
// child has exited): Linux sends PR_SET_PDEATHSIG when the *thread* that
// forked the child ends, and Go may otherwise end that thread at any time.
func startCmd(cmd *exec.Cmd, dieWithParent bool, release <-chan struct{}) error {
	return startCmdPrepared(cmd, dieWithParent, release, nil)
}

// startCmdPrepared is startCmd with prepare, when set, run first on the
// thread that forks cmd, which inherits what prepare changed of the
// thread (a mount namespace); the thread ends with cmd (dieWithParent)
// or at once, never serving other goroutines.
func startCmdPrepared(cmd *exec.Cmd, dieWithParent bool, release <-chan struct{}, prepare func() error) error {
	return startCmdIn(cmd, nil, dieWithParent, release, prepare)
}

// startCmdIn is startCmdPrepared starting cmd in cgroup when set
// (hypervisor.Config.Cgroup): its enter runs on the forking thread before
// prepare, its leave after the fork.
func startCmdIn(cmd *exec.Cmd, cgroup hypervisor.CgroupPlacer, dieWithParent bool, release <-chan struct{}, prepare func() error) error {
	var enter func() error
	var leave func()
	if cgroup != nil {
		var err error
		if enter, leave, err = cgroup.Prepare(cmd); err != nil {
			return err
		}
	}
	if !dieWithParent && prepare == nil && enter == nil {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	goThrowaway(func() {
		// The cgroup first: prepare may leave the host's file system
		// (QEMU's pivot_root, confine.go).
		for _, f := range []func() error{enter, prepare} {
			if f == nil {
				continue
			}
			if err := f(); err != nil {
				errc <- err
				return
			}
		}
		err := cmd.Start()
		if leave != nil {
			leave()
		}
		errc <- err
		if err == nil && dieWithParent {
			<-release
		}
	})
	return <-errc
}

// goThrowaway runs f in a goroutine locked to an OS thread that ends with
// it, whatever f changed of the thread (namespaces, root, capability
// bounding set). Never on the main thread: Go keeps that one, parked,
// when its goroutine exits locked, and /proc/self (mountinfo, root) is
// the main thread's view.
func goThrowaway(f func()) {
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if unix.Gettid() != unix.Getpid() {
			f()
			return
		}
		// The main thread: hold it until f runs locked to another.
		locked := make(chan struct{})
		goThrowaway(func() { close(locked); f() })
		<-locked
		runtime.UnlockOSThread()
	}()
}
