package e2e

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// guestSize is what a container sees of its VM and its own cgroup.
type guestSize struct {
	nproc          int
	memTotalMiB    int
	cpuMax, memMax string
}

// lookInside execs into container cid and reads nproc, MemTotal and its
// cgroup's cpu.max and memory.max.
func lookInside(ctx context.Context, t *testing.T, s *vc.Sandbox, cid string) guestSize {
	t.Helper()
	c := s.Container(cid)
	id := fmt.Sprintf("look-%d", time.Now().UnixNano())
	p := &specs.Process{Args: []string{"sh", "-c", "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo; cat /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max"}, Cwd: "/", Env: oci.DefaultEnv}
	if err := c.Exec(ctx, id, p); err != nil {
		t.Fatalf("exec: %v", err)
	}
	var out syncBuffer
	streams := c.IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
	code, err := c.WaitProcess(ctx, id)
	<-streams
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if err != nil || code != 0 || len(lines) != 4 {
		t.Fatalf("look inside %s: exit %d %v: %q", cid, code, err, out.String())
	}
	var g guestSize
	g.nproc, _ = strconv.Atoi(lines[0])
	kb, _ := strconv.Atoi(lines[1])
	g.memTotalMiB = kb >> 10
	g.cpuMax, g.memMax = lines[2], lines[3]
	return g
}

func limits(quota, memBytes int64) *specs.LinuxResources {
	period := uint64(100000)
	return &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}, Memory: &specs.LinuxMemory{Limit: &memBytes}}
}

// A running container's limits resize its VM: vCPUs and memory are
// hotplugged in and taken out again, with the container's cgroup, and no
// restart; a size the VM cannot take is refused, naming the limit, and
// changes nothing; a container joining grows the VM.
func TestResizeVM(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs a host with 2 CPUs: vCPUs stay within the host's")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	s := createSandbox(ctx, t, vc.SandboxConfig{
		ID: "e2e-resize", StateRoot: stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", CPUs: 1, MemoryMiB: 256, MaxCPUs: 2, MaxMemoryMiB: 1024},
	})
	spec := oci.DefaultSpec([]string{"sleep", "3600"}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "app", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := s.Container("app").Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := s.Status().VMPid
	boot := lookInside(ctx, t, s, "app")
	if boot.nproc != 1 || boot.memTotalMiB > 256 || boot.memTotalMiB < 128 || boot.cpuMax != "max 100000" || boot.memMax != "max" {
		t.Fatalf("at boot: %+v, want 1 vCPU, at most 256 MiB, no limits", boot)
	}

	// Up: 2 CPUs and 512 MiB for the container; the VM gets 2 vCPUs
	// (the host's) and 256+512 MiB.
	begin := time.Now()
	if err := s.Container("app").Update(ctx, limits(200000, 512<<20)); err != nil {
		t.Fatalf("update up: %v", err)
	}
	up := time.Since(begin)
	g := lookInside(ctx, t, s, "app")
	if g.nproc != 2 || g.memTotalMiB < boot.memTotalMiB+500 || g.memTotalMiB > boot.memTotalMiB+512 || g.cpuMax != "200000 100000" || g.memMax != strconv.Itoa(512<<20) {
		t.Fatalf("after resizing up: %+v, want 2 vCPUs, MemTotal %d MiB, cpu.max 200000 100000, memory.max 512 MiB", g, boot.memTotalMiB+512)
	}

	// Down, from another process's view of the sandbox (the VM found
	// again through its state): no limits, the VM back to its own size.
	f, err := vc.FetchSandbox(ctx, stateRoot, "e2e-resize")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	begin = time.Now()
	if err := f.Container("app").Update(ctx, limits(-1, -1)); err != nil {
		t.Fatalf("update down: %v", err)
	}
	down := time.Since(begin)
	// Under TCG the vCPU stays (QEMU 7.2 crashes after unplugging one).
	after := boot
	if s.Status().Accel == "tcg" {
		after.nproc = 2
	}
	if g := lookInside(ctx, t, s, "app"); g != after {
		t.Fatalf("after resizing down: %+v, want %+v", g, after)
	}
	t.Logf("resize under %s: up (1->2 vCPUs, 256->768 MiB) %s, down (768->256 MiB) %s", s.Status().Accel, up.Round(time.Millisecond), down.Round(time.Millisecond))

	// More memory than max_memory_mib: refused before anything changes.
	err = s.Container("app").Update(ctx, limits(100000, 2<<30))
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "linux.resources.memory.limit") || !strings.Contains(err.Error(), "hypervisor.max_memory_mib 1024") {
		t.Fatalf("update beyond max_memory_mib: %v, want ErrResourceExhausted naming the limit and hypervisor.max_memory_mib", err)
	}
	if g := lookInside(ctx, t, s, "app"); g != after {
		t.Fatalf("after a refused resize: %+v, want %+v", g, after)
	}

	// A container joining with limits grows the VM.
	joining := oci.DefaultSpec([]string{"sleep", "3600"}, nil, "/", false)
	joining.Linux.Resources = limits(100000, 256<<20)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "join", Rootfs: root, Spec: joining}); err != nil {
		t.Fatal(err)
	}
	if g := lookInside(ctx, t, s, "app"); g.nproc != 2 || g.memTotalMiB < boot.memTotalMiB+250 || g.memTotalMiB > boot.memTotalMiB+256 {
		t.Fatalf("after a container with 1 CPU and 256 MiB joined: %+v, want 2 vCPUs and %d MiB", g, boot.memTotalMiB+256)
	}
	if err := s.Container("join").Delete(ctx); err != nil {
		t.Fatal(err)
	}

	// The same VM and container throughout.
	if st := s.Status(); st.VMPid != pid {
		t.Fatalf("vm pid %d, was %d", st.VMPid, pid)
	}
	if st, err := s.Container("app").Status(ctx); err != nil || st.State != vc.StateRunning {
		t.Fatalf("app: %+v %v", st, err)
	}
}

// A VM sized at boot for its workload (a pod's limits, AddWorkload) has
// that share plugged as removable devices: the container taking it up
// changes nothing, and its limits shrinking give memory back below the
// boot size, down to the guest's own.
func TestResizeBelowBootSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	h := vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", CPUs: 1, MemoryMiB: 256, MaxMemoryMiB: 1024}
	h.AddWorkload(0, 256)
	s := createSandbox(ctx, t, vc.SandboxConfig{ID: "e2e-resize-boot", StateRoot: stateRoot, Hypervisor: h})
	spec := oci.DefaultSpec([]string{"sleep", "3600"}, nil, "/", false)
	spec.Linux.Resources = limits(-1, 256<<20)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "app", Rootfs: root, Spec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := s.Container("app").Start(ctx); err != nil {
		t.Fatal(err)
	}
	boot := lookInside(ctx, t, s, "app")
	if boot.memMax != strconv.Itoa(256<<20) {
		t.Fatalf("at boot: %+v, want memory.max 256 MiB", boot)
	}
	if err := s.Container("app").Update(ctx, limits(-1, 100<<20)); err != nil {
		t.Fatalf("update down: %v", err)
	}
	g := lookInside(ctx, t, s, "app")
	if g.memTotalMiB != boot.memTotalMiB-128 || g.memMax != strconv.Itoa(100<<20) {
		t.Fatalf("after 256 -> 100 MiB: %+v, want MemTotal %d MiB (one 128 MiB step of the boot size out) and memory.max 100 MiB", g, boot.memTotalMiB-128)
	}
	if err := s.Container("app").Update(ctx, limits(-1, 256<<20)); err != nil {
		t.Fatalf("update up: %v", err)
	}
	if g := lookInside(ctx, t, s, "app"); g != boot {
		t.Fatalf("after 100 -> 256 MiB: %+v, want the boot size %+v", g, boot)
	}
}
