package guest

import (
	"context"
	"fmt"
	"time"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/hotplug"
	"github.com/virtcontainers/vc/internal/guest/pcipath"
	"github.com/virtcontainers/vc/internal/guest/swap"
)

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
