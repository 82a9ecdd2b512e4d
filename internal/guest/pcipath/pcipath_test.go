package pcipath

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/testenv"
)

func TestParse(t *testing.T) {
	good := map[string]string{"02": "02", "02/00": "02/00", "1f/3.1/0": "1f/03.1/00", "a": "0a"}
	for in, want := range good {
		p, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if p.String() != want {
			t.Errorf("Parse(%q) = %s, want %s", in, p, want)
		}
	}
	for _, bad := range []string{"", "/", "02/", "20", "g0", "02.8", "02.", "100", "-1", "02/00/" + strings.Repeat("01/", 16)} {
		if _, err := Parse(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Parse(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func TestFromSlots(t *testing.T) {
	p, err := FromSlots([]uint32{2, 0})
	if err != nil || p.String() != "02/00" {
		t.Fatalf("FromSlots = %v, %v", p, err)
	}
	for _, bad := range [][]uint32{nil, {0x20}, make([]uint32, 17)} {
		if _, err := FromSlots(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("FromSlots(%v) = %v, want InvalidArgument", bad, err)
		}
	}
}

// fakeSysfs makes a bridge at 00:02.0 with bus 01 behind it, a virtio-blk
// device vdb at 01:00.0 and a device without a disk at 00:03.0.
func fakeSysfs(t *testing.T) (sysfs, dev string) {
	t.Helper()
	sysfs = t.TempDir()
	dev = t.TempDir()
	devices := filepath.Join(sysfs, "bus", "pci", "devices")
	for _, d := range []string{
		"0000:00:02.0/pci_bus/0000:01",
		"0000:01:00.0/virtio3/block/vdb",
		"0000:00:03.0/virtio1",
	} {
		if err := os.MkdirAll(filepath.Join(devices, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return sysfs, dev
}

func TestDevice(t *testing.T) {
	sysfs, _ := fakeSysfs(t)
	p, _ := Parse("02/00")
	got, err := p.Device(sysfs)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(sysfs, "bus/pci/devices/0000:01:00.0"); got != want {
		t.Fatalf("Device = %s, want %s", got, want)
	}
	for _, s := range []string{"04", "02/01", "03/00"} {
		p, _ := Parse(s)
		if _, err := p.Device(sysfs); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Device(%s) = %v, want NotFound", s, err)
		}
	}
}

func TestBlockDeviceWaits(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "needs root to mknod a block device node")
	}
	sysfs, dev := fakeSysfs(t)
	p, _ := Parse("02/00")
	// The node appears a little later, as devtmpfs would make it.
	go func() {
		time.Sleep(100 * time.Millisecond)
		unix.Mknod(filepath.Join(dev, "vdb"), unix.S_IFBLK|0o600, int(unix.Mkdev(254, 16)))
	}()
	got, err := BlockDevice(context.Background(), sysfs, dev, p, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got != filepath.Join(dev, "vdb") {
		t.Fatalf("BlockDevice = %s", got)
	}

	// No disk behind 00:03.0: NotFound after the timeout.
	p3, _ := Parse("03")
	start := time.Now()
	_, err = BlockDevice(context.Background(), sysfs, dev, p3, 200*time.Millisecond)
	if !errors.Is(err, errdefs.ErrNotFound) || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("BlockDevice(03) = %v after %v, want NotFound after the timeout", err, time.Since(start))
	}

	// A character device is refused.
	if err := os.MkdirAll(filepath.Join(sysfs, "bus/pci/devices/0000:00:05.0/block/vdc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(dev, "vdc"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	p5, _ := Parse("05")
	if _, err := BlockDevice(context.Background(), sysfs, dev, p5, time.Second); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("BlockDevice(05) = %v, want FailedPrecondition", err)
	}
}

func TestBlockDeviceCancelled(t *testing.T) {
	sysfs, dev := fakeSysfs(t)
	p, _ := Parse("07")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := BlockDevice(ctx, sysfs, dev, p, time.Minute)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("BlockDevice with cancelled context = %v", err)
	}
}

// TestRealSysfs resolves the virtio disks of the machine the test runs on,
// when it has any on the root bus.
func TestRealSysfs(t *testing.T) {
	m, _ := filepath.Glob("/sys/bus/pci/devices/0000:00:*/virtio*/block/*")
	if len(m) == 0 {
		t.Skip("this machine has no virtio-blk disk on PCI bus 0")
	}
	for _, disk := range m {
		bdf := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(disk))))
		slot := strings.Split(strings.TrimPrefix(bdf, "0000:00:"), ".")[0]
		p, err := Parse(slot)
		if err != nil {
			t.Fatal(err)
		}
		got, err := BlockDevice(context.Background(), "/sys", "/dev", p, time.Second)
		if err != nil {
			t.Fatalf("BlockDevice(%s): %v", p, err)
		}
		if want := "/dev/" + filepath.Base(disk); got != want {
			t.Fatalf("BlockDevice(%s) = %s, want %s", p, got, want)
		}
	}
}
