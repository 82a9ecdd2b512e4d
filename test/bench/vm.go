package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

const coldRuns = 3

func init() {
	register("cold-start", coldStart)
	register("memory", memory)
}

// env is what the VM benches share: the CLI, a data root with the current
// guest image, and a private state root.
type vmEnv struct {
	vc, dataRoot, stateRoot string
	img                     *guestimage.Image
}

func newVMEnv() (*vmEnv, error) {
	bin := filepath.Join(testutil.RepoRoot(), "bin")
	e := &vmEnv{vc: filepath.Join(bin, "vc"), dataRoot: envOr("VC_BENCH_DATA_ROOT", "/var/lib/vc")}
	var err error
	if e.stateRoot, err = os.MkdirTemp("", "vc-bench-state-"); err != nil {
		return nil, err
	}
	if out, err := e.cmd("image", "build").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vc image build: %v\n%s", err, out)
	}
	if e.img, err = guestimage.Load(filepath.Join(e.dataRoot, "images", "current")); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *vmEnv) cmd(args ...string) *exec.Cmd {
	return exec.Command(e.vc, append([]string{"--state-root", e.stateRoot, "--data-root", e.dataRoot}, args...)...)
}

func (e *vmEnv) close() { os.RemoveAll(e.stateRoot) }

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// coldStart times `vc run --rm busybox -- true` against the same QEMU and
// kernel booting an initrd whose /init only powers off, runs alternating,
// medians compared. A library run splits the figure into phases.
func coldStart() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	floor, err := floorImage(e, e.img.KernelFlavor)
	if err != nil {
		return nil, err
	}
	// The floor of Debian's generic kernel: the minimal kernel's target
	// is half of it.
	generic := floor
	if e.img.KernelFlavor != guestimage.KernelGeneric {
		if generic, err = floorImage(e, guestimage.KernelGeneric); err != nil {
			return nil, err
		}
	}
	var runs, floors, genericFloors, noNet []time.Duration
	for i := 0; i < coldRuns; i++ {
		d, err := bootFloor(floor, e.stateRoot, i)
		if err != nil {
			return nil, err
		}
		floors = append(floors, d)
		if generic != floor {
			if d, err = bootFloor(generic, e.stateRoot, i); err != nil {
				return nil, err
			}
		}
		genericFloors = append(genericFloors, d)
		t := time.Now()
		if out, err := e.cmd("run", "--rm", "busybox", "--", "true").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vc run: %v\n%s", err, out)
		}
		runs = append(runs, time.Since(t))
		// The same without the default user-mode NAT (no NIC, no
		// address and routes to set): what the NAT costs.
		t = time.Now()
		if out, err := e.cmd("run", "--rm", "--network", "none", "busybox", "--", "true").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("vc run --network none: %v\n%s", err, out)
		}
		noNet = append(noNet, time.Since(t))
	}
	phases, err := phaseRun(e)
	if err != nil {
		return nil, err
	}
	return []row{
		{figure: "cold start: vc run --rm busybox -- true", unit: "s", value: median(runs).Seconds(), floor: median(floors).Seconds(),
			floorName: fmt.Sprintf("same QEMU+kernel (%s %s), /init powers off", e.img.KernelFlavor, e.img.KernelVersion), note: fmt.Sprintf("median of %d; %s; target 1.3", coldRuns, phases)},
		{figure: "cold start against Debian's generic kernel", unit: "s", value: median(runs).Seconds(), floor: median(genericFloors).Seconds(),
			floorName: fmt.Sprintf("generic %s, /init powers off", generic.KernelVersion), note: fmt.Sprintf("median of %d; target 0.5 (minimal kernel)", coldRuns)},
		{figure: "cold start with the default NAT network", unit: "s", value: median(runs).Seconds(), floor: median(noNet).Seconds(),
			floorName: "vc run --network none (loopback only)", note: fmt.Sprintf("median of %d, alternating", coldRuns)},
	}, nil
}

// floorImage builds the power-off initrd with the current image's kernel
// (flavor the image's), or the generic one.
func floorImage(e *vmEnv, flavor guestimage.KernelFlavor) (*guestimage.Image, error) {
	dir, err := os.MkdirTemp("", "vc-floor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	init := filepath.Join(dir, "init")
	if err := buildStatic("./cmd/vc-floor-init", init); err != nil {
		return nil, err
	}
	opts := guestimage.Options{Root: filepath.Join(e.dataRoot, "images"), KernelFlavor: flavor}
	if flavor == e.img.KernelFlavor {
		opts.KernelPackage = genericPackage(e.img)
	}
	return guestimage.BuildFloor(context.Background(), opts, init)
}

// bootFloor boots the floor image through the same driver and waits for
// it to power off.
func bootFloor(img *guestimage.Image, stateRoot string, i int) (time.Duration, error) {
	id := fmt.Sprintf("floor%d", i)
	vm, err := hypervisor.New("qemu", hypervisor.Config{
		ID: id, StateDir: filepath.Join(stateRoot, id), Kernel: img.Kernel, Initrd: img.Initrd,
	})
	if err != nil {
		return 0, err
	}
	t := time.Now()
	if err := vm.Start(context.Background()); err != nil {
		return 0, err
	}
	select {
	case <-vm.Exited():
	case <-time.After(2 * time.Minute):
		vm.Stop(context.Background(), 0)
		return 0, fmt.Errorf("floor VM did not power off")
	}
	d := time.Since(t)
	vm.Stop(context.Background(), 0)
	return d, nil
}

// phaseRun runs `true` through the library and tells where the time goes.
func phaseRun(e *vmEnv) (string, error) {
	ctx := context.Background()
	root, err := rootfs.Busybox(filepath.Join(e.dataRoot, "rootfs"))
	if err != nil {
		return "", err
	}
	t0 := time.Now()
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "phases", StateRoot: e.stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd}})
	if err != nil {
		return "", err
	}
	defer s.Delete(ctx)
	create := time.Since(t0)
	t1 := time.Now()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: oci.DefaultSpec([]string{"true"}, nil, "/", false)}); err != nil {
		s.Stop(ctx, 0)
		return "", err
	}
	ccreate := time.Since(t1)
	t2 := time.Now()
	streams := s.Container("c").IOStream(ctx, "c", vc.IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
	if err := s.Container("c").Start(ctx); err != nil {
		s.Stop(ctx, 0)
		return "", err
	}
	s.Container("c").Wait(ctx)
	<-streams
	run := time.Since(t2)
	t3 := time.Now()
	s.Stop(ctx, 10*time.Second)
	stop := time.Since(t3)
	b := s.Status().Boot
	return fmt.Sprintf("qemu start %.2fs, kernel+agent %.2fs, sandbox setup %.2fs, container create %.2fs, run %.2fs, stop %.2fs (total %.2fs)",
		b.VMStart.Seconds(), b.AgentReady.Seconds(), b.SandboxSetup.Seconds(), ccreate.Seconds(), run.Seconds(), stop.Seconds(), (create + ccreate + run + stop).Seconds()), nil
}

// memory measures an idle sandbox: QEMU's PSS on the host, the agent's RSS
// in the guest.
func memory() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	ctx := context.Background()
	root, err := rootfs.Busybox(filepath.Join(e.dataRoot, "rootfs"))
	if err != nil {
		return nil, err
	}
	idle := func(id string, noBalloon bool) (*vc.Sandbox, error) {
		s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: id, StateRoot: e.stateRoot,
			Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd, NoBalloon: noBalloon}})
		if err != nil {
			return nil, err
		}
		err = s.CreateContainer(ctx, vc.ContainerConfig{ID: "idle", Rootfs: root, Spec: oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)})
		if err == nil {
			err = s.Container("idle").Start(ctx)
		}
		if err != nil {
			s.Stop(ctx, 5*time.Second)
			s.Delete(ctx)
			return nil, err
		}
		return s, nil
	}
	s, err := idle("mem", false)
	if err != nil {
		return nil, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	time.Sleep(3 * time.Second)
	pss, err := pssKiB(s.Status().VMPid)
	if err != nil {
		return nil, err
	}
	anon, _ := rollupKiB(s.Status().VMPid, "Pss_Anon:")
	jit := jitCodeMiB(ctx, filepath.Join(s.Dir(), "vm", "qmp-attach.sock"))
	m, err := s.Metrics(ctx)
	if err != nil {
		return nil, err
	}
	agentRSS := metric(m, "vc_agent_process_resident_memory_bytes") / 1024
	self, _ := pssKiB(os.Getpid())

	// A second idle sandbox shares the file-backed pages: what each
	// costs on a host that runs several.
	s2, err := idle("mem2", false)
	if err != nil {
		return nil, err
	}
	defer func() { s2.Stop(ctx, 5*time.Second); s2.Delete(ctx) }()
	time.Sleep(3 * time.Second)
	pss1, err1 := pssKiB(s.Status().VMPid)
	pss2, err2 := pssKiB(s2.Status().VMPid)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	s2.Stop(ctx, 5*time.Second)
	s2.Delete(ctx)
	// The same without the balloon: what free page reporting takes off
	// an idle sandbox (the memory the boot touched and freed: the
	// initrd's copy, the kernel's init sections).
	s3, err := idle("mem-noballoon", true)
	if err != nil {
		return nil, err
	}
	defer func() { s3.Stop(ctx, 5*time.Second); s3.Delete(ctx) }()
	time.Sleep(3 * time.Second)
	pssNo, err := pssKiB(s3.Status().VMPid)
	if err != nil {
		return nil, err
	}
	anonNo, _ := rollupKiB(s3.Status().VMPid, "Pss_Anon:")
	// Now two sandboxes are up (s and s3): the files' PSS halves, as
	// with s and s2 above.
	pssNow, _ := pssKiB(s.Status().VMPid)
	return []row{
		{figure: "host memory per idle sandbox: QEMU PSS", unit: "MiB", value: float64(pss) / 1024, floor: 120, floorName: "Kata: ~120 MiB PSS per pod", note: fmt.Sprintf("one sandbox on the host; 256 MiB guest, TCG; anonymous %.0f MiB (guest RAM touched + TCG's translated code, %s), files %.0f MiB (kernel, initrd, QEMU: shared by all sandboxes); owner (this bench process) PSS %.1f MiB; target 150 MiB",
			float64(anon)/1024, jit, float64(pss-anon)/1024, float64(self)/1024)},
		{figure: "host memory per idle sandbox, two running: QEMU PSS each", unit: "MiB", value: float64(pss1+pss2) / 2 / 1024, floor: 120, floorName: "Kata: ~120 MiB PSS per pod", note: "the mean of the two; they share the kernel, initrd and QEMU pages; target 150 MiB"},
		{figure: "idle sandbox QEMU PSS, free page reporting against none (two running)", unit: "MiB", value: float64(pssNow) / 1024, floor: float64(pssNo) / 1024, floorName: "the same VM without the balloon",
			note: fmt.Sprintf("anonymous %.0f MiB against %.0f MiB", float64(anonNow(s.Status().VMPid))/1024, float64(anonNo)/1024)},
		{figure: "agent RSS in the guest (sandbox + 1 idle container)", unit: "MiB", value: agentRSS / 1024, note: "target 20 MiB"},
	}, nil
}

func pssKiB(pid int) (int, error) { return rollupKiB(pid, "Pss:") }

func anonNow(pid int) int { n, _ := rollupKiB(pid, "Pss_Anon:"); return n }

// rollupKiB reads one field of a process's smaps_rollup.
func rollupKiB(pid int, field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == field {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no %s in smaps_rollup of %d", field, pid)
}

// tcgCacheKiB is the PSS of a QEMU's TCG translation buffer: its
// anonymous mappings that are writable and executable (the guest's RAM and
// QEMU's heap are not executable). A KVM guest has none.
func tcgCacheKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, err
	}
	sum, in := 0, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			in = f[1] == "rwxp" && len(f) == 5
			continue
		}
		if in && len(f) >= 2 && f[0] == "Pss:" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				return 0, err
			}
			sum += n
		}
	}
	return sum, nil
}

// jitCodeMiB asks QEMU (HMP "info jit" through its second QMP socket) how
// much code TCG has translated: memory a KVM guest does not have.
func jitCodeMiB(ctx context.Context, sock string) string {
	q, err := qmp.Dial(ctx, sock, nil)
	if err != nil {
		return "jit size unknown: " + err.Error()
	}
	defer q.Close()
	var out string
	if err := q.Execute(ctx, "human-monitor-command", map[string]string{"command-line": "info jit"}, &out); err != nil {
		return "jit size unknown: " + err.Error()
	}
	for _, l := range strings.Split(out, "\n") {
		// gen code size       73713123/1073736704
		if f := strings.Fields(l); len(f) == 4 && f[0] == "gen" && f[1] == "code" {
			used, _, _ := strings.Cut(f[3], "/")
			if n, err := strconv.Atoi(used); err == nil {
				return fmt.Sprintf("%.0f MiB of it translated code", float64(n)/(1<<20))
			}
		}
	}
	return "jit size unknown"
}

func metric(text, name string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(l, name)), 64)
			return v
		}
	}
	return 0
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// genericPackage is img's kernel package if img boots Debian's generic
// kernel (a minimal kernel's package is the source it was built from).
func genericPackage(img *guestimage.Image) string {
	if img.KernelFlavor == guestimage.KernelGeneric {
		return img.KernelPackage
	}
	return ""
}
