package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// Real-VM tests: QEMU under TCG (never KVM: CI hosts cannot run it) with
// Debian's kernel and the testinit initrd.

func requireQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real-VM test: skipped in -short mode")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("real-VM test needs qemu-system-x86_64 (apt-get install qemu-system-x86): %v", err)
	}
}

// shortTempDir is a temp dir with a short path: unix socket paths are
// limited to 107 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vcq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func testConfig(t *testing.T, id string) hypervisor.Config {
	k := findTestKernel(t)
	return hypervisor.Config{
		ID:             id,
		StateDir:       filepath.Join(shortTempDir(t), "vm"),
		Kernel:         k.fast(),
		Initrd:         testInitrd(t, k),
		Accel:          hypervisor.AccelTCG,
		AgentTransport: hypervisor.TransportVirtioSerial,
		MemoryMiB:      256,
		Firmware:       os.Getenv("VC_TEST_FIRMWARE"),
		Logger:         testLogger(t),
	}
}

// guestConn talks to testinit over the agent's virtio-serial port.
type guestConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialGuest(t testing.TB, vm *qemuVM) *guestConn {
	t.Helper()
	path, ok := strings.CutPrefix(vm.AgentAddress(), "unix://")
	if !ok {
		t.Fatalf("agent address %q is not a unix socket", vm.AgentAddress())
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connect to the agent socket: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &guestConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (g *guestConn) readLine(timeout time.Duration) (string, error) {
	g.c.SetReadDeadline(time.Now().Add(timeout))
	line, err := g.r.ReadString('\n')
	return strings.TrimSpace(line), err
}

func (g *guestConn) do(cmd string) string {
	g.t.Helper()
	if _, err := fmt.Fprintf(g.c, "%s\n", cmd); err != nil {
		g.t.Fatalf("send %q: %v", cmd, err)
	}
	line, err := g.readLine(30 * time.Second)
	if err != nil {
		g.t.Fatalf("reply to %q: %v", cmd, err)
	}
	return line
}

// until repeats cmd until check accepts the reply (hotplug takes the guest
// a moment).
func (g *guestConn) until(cmd string, check func(string) bool) string {
	g.t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = g.do(cmd); check(last) {
			return last
		}
	}
	g.t.Fatalf("%q: last reply %q", cmd, last)
	return ""
}

func waitBooted(t *testing.T, vm *qemuVM, g *guestConn) time.Duration {
	t.Helper()
	start := time.Now()
	line, err := g.readLine(90 * time.Second)
	if err != nil || line != "vc-test-ok" {
		t.Fatalf("no marker on the agent channel (got %q, %v); vm: %v%s", line, err, vm.ExitError(), vm.logTails())
	}
	return time.Since(start)
}

// openTap makes a non-persistent tap device and returns its descriptor;
// the device goes when the last descriptor (ours and QEMU's) closes.
func openTap(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("tap: %v", err)
	}
	var req [unix.IFNAMSIZ + 64]byte
	copy(req[:], name)
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		f.Close()
		t.Fatalf("TUNSETIFF %s: %v", name, errno)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func processGone(pid int) bool {
	err := syscall.Kill(pid, 0)
	return errors.Is(err, syscall.ESRCH)
}

func TestRealVMLifecycle(t *testing.T) {
	requireQEMU(t)
	cfg := testConfig(t, "life")
	// The compressed kernel, as Debian ships it and the guest image
	// builder uses it; the other tests boot the faster vmlinux.
	cfg.Kernel = findTestKernel(t).vmlinuz
	shared := t.TempDir()
	ro := t.TempDir()
	if err := os.WriteFile(filepath.Join(shared, "host.txt"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.SharedFS = []hypervisor.SharedFS{{Tag: "shared", HostPath: shared}, {Tag: "ro", HostPath: ro, ReadOnly: true}}
	mac0, _ := net.ParseMAC("02:00:00:00:10:01")
	mac1, _ := net.ParseMAC("02:00:00:00:10:02")
	cfg.NICs = []hypervisor.NIC{{ID: "eth0", TapFiles: []*os.File{openTap(t, "vcqt0")}, MAC: mac0}}
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Devices given before Start join the configuration.
	disk0 := filepath.Join(t.TempDir(), "cold.img")
	if err := os.WriteFile(disk0, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := vm.AddDisk(context.Background(), hypervisor.Disk{ID: "cold", Path: disk0, Serial: "cold-serial"}); err != nil {
		t.Fatal(err)
	}
	if st, _ := vm.State(context.Background()); st != hypervisor.StateCreated {
		t.Errorf("state before start: %s", st)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Readers in parallel with everything below (for the race detector).
	pollDone := make(chan struct{})
	pollExited := make(chan struct{})
	go func() {
		defer close(pollExited)
		for {
			select {
			case <-pollDone:
				return
			case <-time.After(5 * time.Millisecond):
			}
			vm.Pid()
			vm.AgentAddress()
			vm.Capabilities()
			vm.ExitError()
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			vm.State(sctx)
			scancel()
		}
	}()
	defer func() { close(pollDone); <-pollExited }()
	begin := time.Now()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background(), 0) })
	startTook := time.Since(begin)
	g := dialGuest(t, vm)
	waitBooted(t, vm, g)
	t.Logf("qemu up in %s, guest at its /init marker %s after Start began", startTook, time.Since(begin))

	pid := vm.Pid()
	if pid <= 0 || processGone(pid) {
		t.Fatalf("pid %d", pid)
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.StateDir, pidFileName)); strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Errorf("pid file holds %q, want %d", b, pid)
	}
	console, _ := os.ReadFile(vm.ConsoleLog())
	if !strings.Contains(string(console), "vc-test: booted") {
		t.Errorf("console log lacks the guest's marker:\n%s", console)
	}
	if st, err := vm.QMP().QueryStatus(ctx); err != nil || !st.Running || st.Status != "running" {
		t.Errorf("query-status: %+v %v", st, err)
	}
	if got := g.do("echo hello"); got != "hello" {
		t.Errorf("echo: %q", got)
	}

	// Pause really freezes the guest: no reply until Resume.
	if err := vm.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := vm.State(ctx); err != nil || st != hypervisor.StatePaused {
		t.Errorf("state after pause: %s %v", st, err)
	}
	fmt.Fprintf(g.c, "echo while-paused\n")
	if line, err := g.readLine(700 * time.Millisecond); err == nil {
		t.Errorf("a paused guest answered %q", line)
	}
	if err := vm.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if line, err := g.readLine(10 * time.Second); err != nil || line != "while-paused" {
		t.Errorf("after resume: %q %v", line, err)
	}
	if st, err := vm.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("state after resume: %s %v", st, err)
	}

	// 9p, read-write and read-only.
	if got := g.do("mount9p shared /mnt/shared"); got != "ok" {
		t.Fatalf("mount 9p: %s", got)
	}
	if got := g.do("read /mnt/shared/host.txt"); got != "data from-host" {
		t.Errorf("guest read of a host file: %q", got)
	}
	if got := g.do("write /mnt/shared/guest.txt from-guest"); got != "ok" {
		t.Errorf("guest write: %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(shared, "guest.txt")); err != nil || string(b) != "from-guest" {
		t.Errorf("host sees %q, %v", b, err)
	}
	if got := g.do("mount9p ro /mnt/ro"); got != "ok" {
		t.Fatalf("mount read-only 9p: %s", got)
	}
	if got := g.do("write /mnt/ro/x nope"); !strings.Contains(got, "read-only") {
		t.Errorf("write to the read-only share: %q", got)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read-only share was written to: %v", err)
	}

	// Cold-plugged NIC and disk, then hotplug and unplug.
	if got := g.until("net", func(s string) bool { return strings.Contains(s, mac0.String()) }); strings.Count(got, "=") != 1 {
		t.Errorf("net at boot: %q", got)
	}
	g.until("blk", func(s string) bool { return strings.Contains(s, ":cold-serial") })

	if err := vm.AddFS(ctx, hypervisor.SharedFS{Tag: "late", HostPath: shared}); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("AddFS after start: %v", err)
	}
	disk1 := filepath.Join(t.TempDir(), "hot.img")
	if err := os.WriteFile(disk1, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "hot", Path: disk1, Serial: "hot-serial", ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "hot", Path: disk1}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second disk with the same id: %v", err)
	}
	g.until("blk", func(s string) bool { return strings.Contains(s, ":hot-serial") })
	if err := vm.AddNIC(ctx, hypervisor.NIC{ID: "eth1", TapFiles: []*os.File{openTap(t, "vcqt1")}, MAC: mac1}); err != nil {
		t.Fatal(err)
	}
	g.until("net", func(s string) bool { return strings.Contains(s, mac1.String()) })
	// Both spare slots are taken now.
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "third", Path: disk1}); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("disk beyond the hotplug slots: %v", err)
	}
	if err := vm.RemoveDisk(ctx, "hot"); err != nil {
		t.Fatal(err)
	}
	g.until("blk", func(s string) bool { return !strings.Contains(s, "hot-serial") })
	if err := vm.RemoveNIC(ctx, "eth1"); err != nil {
		t.Fatal(err)
	}
	g.until("net", func(s string) bool { return !strings.Contains(s, mac1.String()) })
	// A cold-plugged disk sits in a root port too, so it can go.
	if err := vm.RemoveDisk(ctx, "cold"); err != nil {
		t.Fatal(err)
	}
	g.until("blk", func(s string) bool { return strings.TrimSpace(s) == "blk" })
	if err := vm.RemoveDisk(ctx, "cold"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("removing a removed disk: %v", err)
	}
	// The freed slot takes a new disk.
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "again", Path: disk1, Serial: "again"}); err != nil {
		t.Fatal(err)
	}
	g.until("blk", func(s string) bool { return strings.Contains(s, ":again") })

	// Graceful stop: the power button makes the guest power off.
	stopBegin := time.Now()
	if err := vm.Stop(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	stopTook := time.Since(stopBegin)
	t.Logf("graceful stop took %s", stopTook)
	console, _ = os.ReadFile(vm.ConsoleLog())
	if !strings.Contains(string(console), "vc-test: power button pressed") {
		t.Errorf("the guest did not see the power button:\n%s", tailFile(vm.ConsoleLog(), 20, 4096))
	}
	if stopTook > 15*time.Second {
		t.Errorf("graceful stop took %s", stopTook)
	}
	select {
	case <-vm.Exited():
	default:
		t.Error("Exited not closed after Stop")
	}
	if !processGone(pid) {
		t.Errorf("qemu pid %d still there", pid)
	}
	if err := vm.ExitError(); err == nil || !strings.Contains(err.Error(), "exited with status 0") {
		t.Errorf("exit error: %v", err)
	}
	for _, name := range []string{qmpSocketName, attachQMPName, agentSocketName, pidFileName, recordName} {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Stop: %v", name, err)
		}
	}
	if st, _ := vm.State(ctx); st != hypervisor.StateStopped {
		t.Errorf("state after stop: %s", st)
	}
	if err := vm.Stop(ctx, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := vm.AddDisk(ctx, hypervisor.Disk{ID: "late", Path: disk1}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("AddDisk after Stop: %v", err)
	}
}

func TestRealVMKilledAndAttach(t *testing.T) {
	requireQEMU(t)
	cfg := testConfig(t, "killed")
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Stop(context.Background(), 0) })
	g := dialGuest(t, vm)
	waitBooted(t, vm, g)

	// Another handle on the same VM, as another process would get.
	att, err := attachVM(ctx, cfg.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if att.Pid() != vm.Pid() || att.AgentAddress() != vm.AgentAddress() {
		t.Errorf("attached: pid %d agent %s; started: pid %d agent %s", att.Pid(), att.AgentAddress(), vm.Pid(), vm.AgentAddress())
	}
	if d := vm.DataAddress(); d != filepath.Join(cfg.StateDir, dataSocketName) || att.DataAddress() != d {
		t.Errorf("data port: started %q, attached %q, want %s in the state dir", d, att.DataAddress(), dataSocketName)
	}
	if _, err := os.Stat(vm.DataAddress()); err != nil {
		t.Errorf("data port socket: %v", err)
	}
	if st, err := att.State(ctx); err != nil || st != hypervisor.StateRunning {
		t.Errorf("attached state: %s %v", st, err)
	}
	if caps := att.Capabilities(); caps.AgentTransport != hypervisor.TransportVirtioSerial || caps.Accel != hypervisor.AccelTCG || !caps.BlockHotplug {
		t.Errorf("attached capabilities: %+v", caps)
	}

	if err := syscall.Kill(vm.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]*qemuVM{"started": vm, "attached": att} {
		select {
		case <-h.Exited():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s handle: Exited not closed 10 s after SIGKILL", name)
		}
	}
	if err := vm.ExitError(); err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
		t.Errorf("exit error: %v", err)
	}
	if st, _ := att.State(ctx); st != hypervisor.StateStopped {
		t.Errorf("attached state after kill: %s", st)
	}
	if err := vm.Pause(ctx); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("Pause of a dead VM: %v", err)
	}
	if err := vm.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, agentSocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("agent socket left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, dataSocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data port socket left: %v", err)
	}
	if err := att.Close(); err != nil {
		t.Error(err)
	}
	if _, err := attachVM(ctx, cfg.StateDir); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Attach to a stopped VM: %v", err)
	}
}

// qemuProcessesIn lists the QEMU processes whose command line mentions dir.
func qemuProcessesIn(dir string) []int {
	return proc.Find(func(args []string) bool {
		line := strings.Join(args, " ")
		return strings.Contains(line, "qemu") && strings.Contains(line, dir)
	})
}

func TestRealVMStartFailures(t *testing.T) {
	requireQEMU(t)
	t.Run("missing kernel", func(t *testing.T) {
		cfg := testConfig(t, "nokernel")
		cfg.Kernel = "/nonexistent/vmlinuz-vc-test"
		vm, err := newVM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = vm.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/vmlinuz-vc-test") || !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("got %v, want a not-found error naming the kernel", err)
		}
		if vm.Pid() != 0 || len(qemuProcessesIn(cfg.StateDir)) != 0 {
			t.Fatalf("a process was left: pid %d, %v", vm.Pid(), qemuProcessesIn(cfg.StateDir))
		}
	})
	t.Run("qemu rejects the kernel", func(t *testing.T) {
		cfg := testConfig(t, "badkernel")
		cfg.Kernel = filepath.Join(t.TempDir(), "garbage")
		if err := os.WriteFile(cfg.Kernel, []byte("not a kernel"), 0o644); err != nil {
			t.Fatal(err)
		}
		vm, err := newVM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = vm.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "while starting") || !strings.Contains(err.Error(), "qemu log") {
			t.Fatalf("got %v, want qemu's exit with its log", err)
		}
		t.Logf("error as the caller sees it: %v", err)
		select {
		case <-vm.Exited():
		default:
			t.Error("Exited not closed")
		}
		if pids := qemuProcessesIn(cfg.StateDir); len(pids) != 0 {
			t.Errorf("processes left: %v", pids)
		}
		for _, name := range []string{qmpSocketName, agentSocketName, recordName} {
			if _, err := os.Stat(filepath.Join(cfg.StateDir, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left: %v", name, err)
			}
		}
	})
	t.Run("guest panics", func(t *testing.T) {
		// No initrd and no root disk: the kernel panics, panic=1 reboots,
		// -no-reboot ends QEMU; ExitError shows the panic.
		cfg := testConfig(t, "panic")
		cfg.Initrd = ""
		vm, err := newVM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vm.Stop(context.Background(), 0) })
		select {
		case <-vm.Exited():
		case <-time.After(90 * time.Second):
			t.Fatal("the VM did not end after its kernel panicked")
		}
		err = vm.ExitError()
		if err == nil || !strings.Contains(err.Error(), "Kernel panic") {
			t.Fatalf("exit error lacks the panic: %v", err)
		}
	})
}

// TestRealVMStopEscalation: a guest that ignores the power button is quit
// over QMP after the grace period; a QEMU that cannot even answer (SIGSTOP)
// is killed.
func TestRealVMStopEscalation(t *testing.T) {
	requireQEMU(t)
	oldQuit := quitTimeout
	t.Cleanup(func() { quitTimeout = oldQuit })
	quitTimeout = time.Second

	t.Run("quit after grace", func(t *testing.T) {
		cfg := testConfig(t, "ignorer")
		vm, err := newVM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Seconds before the guest kernel can see an ACPI event.
		begin := time.Now()
		if err := vm.Stop(context.Background(), 500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		took := time.Since(begin)
		if vm.stopHow != "qmp quit" || took < 500*time.Millisecond || took > 5*time.Second {
			t.Errorf("stop: %q in %s, want a QMP quit after the 500ms grace", vm.stopHow, took)
		}
		if err := vm.ExitError(); err == nil || !strings.Contains(err.Error(), "exited with status 0") {
			t.Errorf("exit: %v", err)
		}
	})
	t.Run("kill a frozen qemu", func(t *testing.T) {
		cfg := testConfig(t, "frozen")
		vm, err := newVM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		pid := vm.Pid()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		if err := vm.Stop(context.Background(), 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		took := time.Since(begin)
		if vm.stopHow != "killed" || took > 8*time.Second {
			t.Errorf("stop: %q in %s, want killed", vm.stopHow, took)
		}
		if !processGone(pid) {
			t.Errorf("pid %d still there", pid)
		}
		if err := vm.ExitError(); err == nil || !strings.Contains(err.Error(), "killed by signal 9") {
			t.Errorf("exit: %v", err)
		}
	})
	t.Run("cancelled context kills at once", func(t *testing.T) {
		cfg := testConfig(t, "cancelled")
		vm, err := newVM(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		begin := time.Now()
		if err := vm.Stop(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		if vm.stopHow != "killed" || time.Since(begin) > 5*time.Second {
			t.Errorf("stop: %q in %s", vm.stopHow, time.Since(begin))
		}
	})
}
