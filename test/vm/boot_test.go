package vm_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
)

// TestBootAgent boots the agent image under TCG and talks to the agent
// over virtio-serial: health, guest details, reconnection after the host
// side hangs up, the switch off the initramfs, and a 9p share.
func TestBootAgent(t *testing.T) {
	requireVMTools(t)
	opts := imageOptions(t)
	opts.Agent = testutil.AgentBinary(t)
	img, err := guestimage.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The 9p share is a busybox root filesystem: the container test
	// runs from it.
	share := testutil.BusyboxRootfs(t)
	if err := os.WriteFile(filepath.Join(share, "hello"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := startVM(t, img,
		"-fsdev", "local,id=fs0,path="+share+",security_model=none",
		"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=shared")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := v.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Logf("boot to first Health.Check: %v (kernel %s, initrd %d bytes %s, %d modules)",
		time.Since(v.started).Round(time.Millisecond), img.KernelVersion, img.InitrdSize, img.Compression, len(img.Modules))

	t.Run("GuestDetails", func(t *testing.T) {
		d, err := c.svc.GetGuestDetails(ctx, &pb.GuestDetailsRequest{MemBlockSize: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("guest details: %v", d)
		if d.AgentDetails == nil || d.AgentDetails.Version == "" {
			t.Errorf("no agent version in guest details: %v", d)
		}
	})

	t.Run("RootSwitched", func(t *testing.T) {
		// The agent logs "root switched" after moving from the initramfs
		// mount (rootfs, where pivot_root fails) to a bind mount of it.
		con := v.Console()
		line := ""
		for _, l := range strings.Split(con, "\n") {
			if strings.Contains(l, `msg="root switched"`) {
				line = l
			}
		}
		if line == "" {
			t.Fatalf("console has no \"root switched\" line:\n%s", con)
		}
		if !strings.Contains(line, "bind mount") {
			t.Errorf("root switched, but not to a bind mount: %s", line)
		}
		t.Log(line)
		if strings.Contains(con, "vc-agent failed") {
			t.Errorf("agent reports a failure:\n%s", con)
		}
	})

	t.Run("Reconnect", func(t *testing.T) {
		// The host hanging up must not end the agent's virtio-serial
		// listener: the next connection is served, and its first
		// request is not lost (one attempt, no retry), however soon it
		// comes after the hangup.
		for i := range 10 {
			c.Close()
			if i%2 == 1 {
				time.Sleep(100 * time.Millisecond) // let the guest see the hangup
			}
			start := time.Now()
			dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
			nc, err := v.connect(dctx)
			dcancel()
			if err != nil {
				t.Fatalf("reconnection %d: %v", i+1, err)
			}
			c = nc
			t.Logf("reconnection %d answered in %v", i+1, time.Since(start).Round(time.Millisecond))
			if _, err := c.health.Version(ctx, &pb.CheckRequest{}); err != nil {
				t.Fatalf("reconnection %d: Version: %v", i+1, err)
			}
		}
	})

	t.Run("ReconnectPending", func(t *testing.T) {
		// Hang up while a long poll (GetOOMEvent waits for an OOM) is in
		// flight, and come back at once.
		done := make(chan error, 1)
		go func() {
			_, err := c.svc.GetOOMEvent(ctx, &pb.GetOOMEventRequest{})
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("GetOOMEvent returned without an OOM: %v", err)
		default:
		}
		c.Close()
		if err := <-done; err == nil {
			t.Error("GetOOMEvent succeeded on a closed client")
		}
		start := time.Now()
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		nc, err := v.connect(dctx)
		dcancel()
		if err != nil {
			t.Fatalf("reconnection with a request pending on the old connection: %v", err)
		}
		c = nc
		t.Logf("reconnection answered in %v", time.Since(start).Round(time.Millisecond))
	})

	const mp = "/run/vc-agent/sandbox/shared"
	mounted := false
	t.Run("9p", func(t *testing.T) {
		_, err := c.svc.CreateSandbox(ctx, &pb.CreateSandboxRequest{
			SandboxId: "vmtest",
			Storages: []*pb.Storage{{
				Driver: "9p", Source: "shared", Fstype: "9p", MountPoint: mp,
				Options: []string{"trans=virtio", "version=9p2000.L"},
			}},
		})
		if err != nil {
			t.Fatalf("CreateSandbox with a 9p storage: %v", err)
		}
		mounted = true
		st, err := c.svc.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: mp})
		if err != nil {
			t.Fatalf("GetVolumeStats %s: %v", mp, err)
		}
		// 9p passes statfs through: the guest sees the host directory's
		// filesystem, its block count rounded down to whole 9p blocks
		// (QEMU scales the block size up towards msize, at most 1 MiB).
		var hs unix.Statfs_t
		if err := unix.Statfs(share, &hs); err != nil {
			t.Fatal(err)
		}
		want := hs.Blocks * uint64(hs.Bsize)
		for _, u := range st.Usage {
			if u.Unit == pb.VolumeUsage_BYTES {
				if u.Total > want || want-u.Total >= 1<<20 {
					t.Errorf("guest sees %d bytes in %s, the host share has %d", u.Total, mp, want)
				}
				return
			}
		}
		t.Errorf("GetVolumeStats %s gave no byte usage: %v", mp, st)
	})

	t.Run("Container", func(t *testing.T) {
		// A container whose root is the 9p share: proves pivot_root
		// works in the guest once the agent is off the initramfs.
		if !mounted {
			t.Skip("the 9p share is not mounted (see the 9p subtest): no root filesystem for a container")
		}
		_, err := c.svc.CreateContainer(ctx, &pb.CreateContainerRequest{ContainerId: "c1", ExecId: "c1", OCI: busyboxSpec(mp, "/bin/sh", "-c", "cat /hello; grep -c ' / / ' /proc/self/mountinfo")})
		if err != nil {
			t.Fatalf("CreateContainer: %v", err)
		}
		if _, err := c.svc.StartContainer(ctx, &pb.StartContainerRequest{ContainerId: "c1"}); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		var out strings.Builder
		for {
			r, err := c.svc.ReadStdout(ctx, &pb.ReadStreamRequest{ContainerId: "c1", ExecId: "c1", Len: 4096})
			if status.Code(err) == codes.OutOfRange {
				break
			}
			if err != nil {
				t.Fatalf("ReadStdout after %q: %v", out.String(), err)
			}
			out.Write(r.Data)
		}
		w, err := c.svc.WaitProcess(ctx, &pb.WaitProcessRequest{ContainerId: "c1", ExecId: "c1"})
		if err != nil {
			t.Fatalf("WaitProcess: %v", err)
		}
		if w.Status != 0 || out.String() != "from the host\n1\n" {
			t.Errorf("container exited %d with output %q, want 0 and %q", w.Status, out.String(), "from the host\n1\n")
		}
		if _, err := c.svc.RemoveContainer(ctx, &pb.RemoveContainerRequest{ContainerId: "c1"}); err != nil {
			t.Errorf("RemoveContainer: %v", err)
		}
	})
}

// busyboxSpec is a minimal OCI spec running args in rootfs.
func busyboxSpec(rootfs string, args ...string) *pb.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"}
	return &pb.Spec{
		Version: "1.0.2",
		Process: &pb.Process{
			Args: args,
			Env:  []string{"PATH=/bin:/sbin"},
			Cwd:  "/",
			User: &pb.User{},
			Capabilities: &pb.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Root:     &pb.Root{Path: rootfs},
		Hostname: "vmtest",
		Mounts: []*pb.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &pb.Linux{
			Namespaces: []*pb.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
		},
	}
}

// TestBootFloor boots the floor image: its /init only powers off, and
// QEMU must exit by itself, cleanly.
func TestBootFloor(t *testing.T) {
	requireVMTools(t)
	img, err := guestimage.BuildFloor(context.Background(), imageOptions(t), floorInit(t))
	if err != nil {
		t.Fatal(err)
	}
	v := startVM(t, img)
	select {
	case <-v.exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("the floor VM did not power off within 90s")
	}
	took := time.Since(v.started)
	if !v.cmd.ProcessState.Success() {
		t.Fatalf("qemu: %v (a kernel panic, not a power off?)", v.cmd.ProcessState)
	}
	if con := v.Console(); strings.Contains(con, "Kernel panic") || strings.Contains(con, "vc-floor-init:") {
		t.Fatalf("floor init did not power off cleanly:\n%s", con)
	}
	t.Logf("floor boot to power off: %v (initrd %d bytes)", took.Round(time.Millisecond), img.InitrdSize)
}

// BenchmarkBootCompression boots the agent image with each initrd
// compression, and the floor image, in interleaved rounds (the machine is
// shared and noisy: a slow moment hits every variant alike), and reports
// for each the median time from starting QEMU to the agent's first
// Health.Check answer (the floor: to its power off):
//
//	go test ./test/vm -run XXX -bench BootCompression -benchtime 5x
func BenchmarkBootCompression(b *testing.B) {
	requireVMTools(b)
	agent := testutil.AgentBinary(b)
	comps := []guestimage.Compression{guestimage.CompressNone, guestimage.CompressGzip, guestimage.CompressLZ4, guestimage.CompressZstd, guestimage.CompressXz}
	imgs := map[string]*guestimage.Image{}
	for _, comp := range comps {
		opts := imageOptions(b)
		opts.Agent = agent
		opts.Compression = comp
		img, err := guestimage.Build(context.Background(), opts)
		if err != nil {
			b.Fatal(err)
		}
		imgs[string(comp)] = img
	}
	floor, err := guestimage.BuildFloor(context.Background(), imageOptions(b), floorInit(b))
	if err != nil {
		b.Fatal(err)
	}
	imgs["floor"] = floor
	names := []string{"floor"}
	for _, c := range comps {
		names = append(names, string(c))
	}
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for range b.N {
		for _, name := range names {
			v := startVM(b, imgs[name])
			if name == "floor" {
				select {
				case <-v.exited:
				case <-time.After(90 * time.Second):
					b.Fatal("floor VM did not power off")
				}
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
				c, err := v.dial(ctx)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
			times[name] = append(times[name], time.Since(v.started))
			v.cmd.Process.Kill()
			<-v.exited
		}
	}
	b.StopTimer()
	for _, name := range names {
		ts := times[name]
		slices.Sort(ts)
		b.ReportMetric(ts[len(ts)/2].Seconds(), "s-"+name)
		b.Logf("%-5s initrd %5.1f MB: median %v, all %v", name, float64(imgs[name].InitrdSize)/1e6, ts[len(ts)/2].Round(time.Millisecond), ts)
	}
}
