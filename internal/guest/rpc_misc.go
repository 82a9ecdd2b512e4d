package guest

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/hotplug"
	"github.com/virtcontainers/vc/internal/guest/storage"
	"github.com/virtcontainers/vc/internal/guest/volume"
)

// The guest, storage and observability RPCs. Each handler is a thin
// wrapper: the work is done in details.go, clock.go, entropy.go, resources.go,
// metrics.go and policy.go, and in the packages copyfile,
// hotplug, metrics, storage, swap and volume.

// UpdateEphemeralMounts implements AgentService.UpdateEphemeralMounts:
// ephemeral (tmpfs) storages are mounted or remounted with new options,
// local ones made or given a new mode.
func (a *Agent) UpdateEphemeralMounts(ctx context.Context, req *pb.UpdateEphemeralMountsRequest) (*emptypb.Empty, error) {
	if err := storage.UpdateEphemeral(ctx, req.GetStorages()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// RemoveStaleVirtiofsShareMounts implements
// AgentService.RemoveStaleVirtiofsShareMounts: virtio-fs mounts below the
// sandbox root that no storage holds are unmounted.
func (a *Agent) RemoveStaleVirtiofsShareMounts(ctx context.Context, req *pb.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	removed, err := storage.RemoveStaleVirtiofs(a.cfg.SandboxRoot)
	if len(removed) > 0 {
		a.log.Info("stale virtio-fs mounts removed", "mount_points", removed)
	}
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetMetrics implements AgentService.GetMetrics.
func (a *Agent) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.Metrics, error) {
	text, err := a.metrics()
	if err != nil {
		return nil, err
	}
	return &pb.Metrics{Metrics: text}, nil
}

// OnlineCPUMem implements AgentService.OnlineCPUMem.
func (a *Agent) OnlineCPUMem(ctx context.Context, req *pb.OnlineCPUMemRequest) (*emptypb.Empty, error) {
	if err := a.onlineCPUMem(ctx, req); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ReseedRandomDev implements AgentService.ReseedRandomDev.
func (a *Agent) ReseedRandomDev(ctx context.Context, req *pb.ReseedRandomDevRequest) (*emptypb.Empty, error) {
	if err := a.reseedRandom(req.GetData()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetGuestDetails implements AgentService.GetGuestDetails.
func (a *Agent) GetGuestDetails(ctx context.Context, req *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	return a.guestDetails(req)
}

// MemHotplugByProbe implements AgentService.MemHotplugByProbe.
func (a *Agent) MemHotplugByProbe(ctx context.Context, req *pb.MemHotplugByProbeRequest) (*emptypb.Empty, error) {
	a.misc.hotplugMu.Lock()
	defer a.misc.hotplugMu.Unlock()
	if err := hotplug.ProbeMemory(a.misc.sysfs, req.GetMemHotplugProbeAddr()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// SetGuestDateTime implements AgentService.SetGuestDateTime.
func (a *Agent) SetGuestDateTime(ctx context.Context, req *pb.SetGuestDateTimeRequest) (*emptypb.Empty, error) {
	if err := setDateTime(req.GetSec(), req.GetUsec()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// CopyFile implements AgentService.CopyFile.
func (a *Agent) CopyFile(ctx context.Context, req *pb.CopyFileRequest) (*emptypb.Empty, error) {
	c, err := a.misc.copyFiles()
	if err != nil {
		return nil, err
	}
	if err := c.Copy(req); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// AddSwap implements AgentService.AddSwap.
func (a *Agent) AddSwap(ctx context.Context, req *pb.AddSwapRequest) (*emptypb.Empty, error) {
	if err := a.addSwap(ctx, req.GetPCIPath()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetVolumeStats implements AgentService.GetVolumeStats.
func (a *Agent) GetVolumeStats(ctx context.Context, req *pb.VolumeStatsRequest) (*pb.VolumeStatsResponse, error) {
	return volume.Stats(req.GetVolumeGuestPath())
}

// ResizeVolume implements AgentService.ResizeVolume.
func (a *Agent) ResizeVolume(ctx context.Context, req *pb.ResizeVolumeRequest) (*emptypb.Empty, error) {
	if err := volume.Resize(req.GetVolumeGuestPath(), req.GetSize(), a.reaper.Run); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// SetPolicy implements AgentService.SetPolicy.
func (a *Agent) SetPolicy(ctx context.Context, req *pb.SetPolicyRequest) (*emptypb.Empty, error) {
	if err := a.misc.setPolicy(ctx, a, req.GetPolicy()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}
