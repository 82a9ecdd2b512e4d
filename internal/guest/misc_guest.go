package guest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/hotplug"
	"github.com/virtcontainers/vc/internal/guest/pcipath"
	"github.com/virtcontainers/vc/internal/guest/storage"
	"github.com/virtcontainers/vc/internal/guest/swap"
)

// guestDetails answers GetGuestDetails.
func (a *Agent) guestDetails(req *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	resp := &pb.GuestDetailsResponse{
		AgentDetails: &pb.AgentDetails{
			Version:         Version,
			InitDaemon:      a.cfg.InitDaemon,
			StorageHandlers: storage.Drivers(),
			SupportsSeccomp: a.supportsSeccomp(),
		},
	}
	if req.GetMemBlockSize() {
		n, err := hotplug.MemBlockSize(a.misc.sysfs)
		if err != nil {
			return nil, fmt.Errorf("mem_block_size: %w", err)
		}
		resp.MemBlockSizeBytes = n
	}
	if req.GetMemHotplugProbe() {
		resp.SupportMemHotplugProbe = hotplug.ProbeSupported(a.misc.sysfs)
	}
	return resp, nil
}

// supportsSeccomp: the agent was built with libseccomp and the kernel
// filters system calls (its /proc/PID/status has a Seccomp line).
func (a *Agent) supportsSeccomp() bool {
	if !seccomp.Enabled {
		return false
	}
	b, err := os.ReadFile(filepath.Join(a.misc.procfs, "self", "status"))
	return err == nil && bytes.Contains(b, []byte("\nSeccomp:"))
}

// setDateTime sets the guest's clock.
func setDateTime(sec, usec int64) error {
	if sec < 0 {
		return invalid("Sec", "%d is negative", sec)
	}
	if usec < 0 || usec > 999999 {
		return invalid("Usec", "%d is out of range 0-999999", usec)
	}
	tv := unix.Timeval{Sec: sec, Usec: usec}
	if err := unix.Settimeofday(&tv); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("settimeofday: %w: %w", err, errdefs.ErrPermissionDenied)
		}
		return fmt.Errorf("settimeofday %d.%06d: %w", sec, usec, err)
	}
	return nil
}

// maxSeed bounds ReseedRandomDev's data.
const maxSeed = 1 << 20

// reseedRandom adds data to the kernel's entropy pool, credited with
// RNDADDENTROPY on /dev/random; without the right to credit, it is still
// mixed in by writing it to /dev/urandom.
func (a *Agent) reseedRandom(data []byte) error {
	if len(data) == 0 {
		return invalid("data", "empty")
	}
	if len(data) > maxSeed {
		return invalid("data", "%d bytes is more than the %d allowed", len(data), maxSeed)
	}
	err := addEntropy(filepath.Join(a.misc.dev, "random"), data)
	if err == nil {
		return nil
	}
	a.log.Debug("RNDADDENTROPY failed, writing to urandom", "err", err)
	f, werr := os.OpenFile(filepath.Join(a.misc.dev, "urandom"), os.O_WRONLY, 0)
	if werr == nil {
		_, werr = f.Write(data)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
	}
	if werr != nil {
		return fmt.Errorf("reseed: %w (and RNDADDENTROPY: %w)", werr, err)
	}
	return nil
}

// addEntropy passes data to RNDADDENTROPY, crediting 8 bits a byte:
// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }.
func addEntropy(dev string, data []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := make([]byte, 8+len(data))
	binary.NativeEndian.PutUint32(info[0:], uint32(len(data)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(data)))
	copy(info[8:], data)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}

// cpuWait bounds the wait for hotplugged CPUs to appear, as Kata's
// agent does (50 tries, 100 ms apart).
const cpuWait = 5 * time.Second

// onlineCPUMem brings hotplugged CPUs and memory online. With wait it
// answers when done (or failed); otherwise it answers at once and the
// work goes on in the background, its failure only logged.
func (a *Agent) onlineCPUMem(ctx context.Context, req *pb.OnlineCPUMemRequest) error {
	n := int(req.GetNbCpus())
	if n > 0 {
		if possible, err := hotplug.PossibleCPUs(a.misc.sysfs); err == nil && n > possible {
			return invalid("nb_cpus", "%d is more than the %d CPUs the guest can have", n, possible)
		}
	}
	work := func(ctx context.Context) error {
		a.misc.hotplugMu.Lock()
		defer a.misc.hotplugMu.Unlock()
		if n > 0 {
			ctx, cancel := context.WithTimeout(ctx, cpuWait)
			defer cancel()
			done, err := hotplug.OnlineCPUs(ctx, a.misc.sysfs, n, 100*time.Millisecond)
			if err != nil {
				return err
			}
			a.log.Info("CPUs online", "count", done)
		}
		if !req.GetCpuOnly() {
			done, err := hotplug.OnlineMemory(a.misc.sysfs)
			if err != nil {
				return fmt.Errorf("online memory: %w", err)
			}
			if done > 0 {
				a.log.Info("memory blocks online", "count", done)
			}
		}
		return nil
	}
	if req.GetWait() {
		return work(ctx)
	}
	go func() {
		if err := work(context.Background()); err != nil {
			a.log.Error("OnlineCPUMem", "err", err)
		}
	}()
	return nil
}

// addSwap finds the disk at a PCI path and makes it swap.
func (a *Agent) addSwap(ctx context.Context, slots []uint32) error {
	p, err := pcipath.FromSlots(slots)
	if err != nil {
		return fmt.Errorf("PCIPath: %w", err)
	}
	dev, err := pcipath.BlockDevice(ctx, a.misc.sysfs, a.misc.dev, p, a.misc.deviceTimeout)
	if err != nil {
		return fmt.Errorf("PCIPath: %w", err)
	}
	if err := swap.Enable(dev, a.reaper.Run); err != nil {
		return fmt.Errorf("PCIPath: %s: %w", p, err)
	}
	return nil
}
