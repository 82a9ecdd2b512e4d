package vm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// TestBootBlockDevices: an ext4 disk mounted in the guest as a blk
// storage; the host grows the image and the device (QMP block_resize), and
// ResizeVolume grows the filesystem online, with nothing but the agent in
// the guest (no e2fsprogs). A second, blank disk becomes swap (AddSwap by
// PCI path), which the guest's metrics then count.
func TestBootBlockDevices(t *testing.T) {
	requireVMTools(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Fatalf("needs mkfs.ext4 (e2fsprogs) to make the disk: %v", err)
	}
	opts := imageOptions(t)
	opts.Agent = testutil.AgentBinary(t)
	img, err := guestimage.Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(t.TempDir(), "vol.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", disk, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	swapDisk := filepath.Join(t.TempDir(), "swap.img")
	if err := os.WriteFile(swapDisk, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	qmpSock := filepath.Join(t.TempDir(), "qmp.sock")
	v := startVM(t, img,
		"-drive", "file="+disk+",if=none,id=d0,format=raw",
		"-device", "virtio-blk-pci,drive=d0",
		"-drive", "file="+swapDisk+",if=none,id=s0,format=raw",
		"-device", "virtio-blk-pci,drive=s0,addr=0x6",
		"-qmp", "unix:"+qmpSock+",server=on,wait=off")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := v.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	const mp = "/run/vc-agent/sandbox/vol"
	if _, err := c.svc.CreateSandbox(ctx, &pb.CreateSandboxRequest{
		SandboxId: "voltest",
		Storages:  []*pb.Storage{{Driver: "blk", Source: "/dev/vda", Fstype: "ext4", MountPoint: mp}},
	}); err != nil {
		t.Fatalf("CreateSandbox with the ext4 disk as a blk storage: %v", err)
	}
	total := func() uint64 {
		t.Helper()
		st, err := c.svc.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: mp})
		if err != nil {
			t.Fatalf("GetVolumeStats: %v", err)
		}
		for _, u := range st.Usage {
			if u.Unit == pb.VolumeUsage_BYTES {
				return u.Total
			}
		}
		t.Fatalf("GetVolumeStats gave no byte usage: %v", st)
		return 0
	}
	before := total()

	// Not grown yet: asking for more than the device has is refused.
	const size = 64 << 20
	if _, err := c.svc.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: mp, Size: size}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) {
		t.Errorf("ResizeVolume to %d before the device grew: %v, want failed precondition", size, err)
	}

	if err := os.Truncate(disk, size); err != nil {
		t.Fatal(err)
	}
	q, err := qmp.Dial(ctx, qmpSock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := q.Execute(ctx, "block_resize", map[string]any{"device": "d0", "size": size}, nil); err != nil {
		t.Fatalf("QMP block_resize: %v", err)
	}
	// The guest learns the new capacity from a config interrupt.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.svc.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: mp, Size: size})
		if err == nil {
			break
		}
		if !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) || time.Now().After(deadline) {
			t.Fatalf("ResizeVolume to %d: %v", size, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// It only grows.
	if _, err := c.svc.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: mp, Size: 8 << 20}); !errdefs.IsFailedPrecondition(errgrpc.ToNative(err)) || !strings.Contains(err.Error(), "only grow") {
		t.Errorf("ResizeVolume to 8 MiB: %v, want failed precondition: it can only grow", err)
	}
	after := total()
	t.Logf("filesystem: %d bytes, %d after the resize", before, after)
	if after < before*3 {
		t.Errorf("filesystem total %d bytes before, %d after growing the device from 16 to 64 MiB", before, after)
	}

	// The blank disk in slot 6 of the root bus becomes swap.
	if _, err := c.svc.AddSwap(ctx, &pb.AddSwapRequest{PCIPath: []uint32{6}}); err != nil {
		t.Fatalf("AddSwap 06: %v", err)
	}
	m, err := c.svc.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var swapTotal float64
	for _, l := range strings.Split(m.Metrics, "\n") {
		if v, ok := strings.CutPrefix(l, "vc_guest_swap_total_bytes "); ok {
			swapTotal, _ = strconv.ParseFloat(v, 64)
		}
	}
	if swapTotal < 15<<20 || swapTotal > 16<<20 {
		t.Errorf("guest swap after AddSwap of a 16 MiB disk: %v bytes, want about 16 MiB", swapTotal)
	}
	if _, err := c.svc.AddSwap(ctx, &pb.AddSwapRequest{PCIPath: []uint32{0x1e}}); !errdefs.IsNotFound(errgrpc.ToNative(err)) {
		t.Errorf("AddSwap of an empty slot: %v, want not found", err)
	}
}
