package guest

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// miscState is the agent's state for guest, network and storage RPCs.
type miscState struct{}

func (s *miscState) init(a *Agent) {}

// UpdateEphemeralMounts implements AgentService.UpdateEphemeralMounts.
func (a *Agent) UpdateEphemeralMounts(ctx context.Context, req *pb.UpdateEphemeralMountsRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("UpdateEphemeralMounts")
}

// RemoveStaleVirtiofsShareMounts implements AgentService.RemoveStaleVirtiofsShareMounts.
func (a *Agent) RemoveStaleVirtiofsShareMounts(ctx context.Context, req *pb.RemoveStaleVirtiofsShareMountsRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("RemoveStaleVirtiofsShareMounts")
}

// GetMetrics implements AgentService.GetMetrics.
func (a *Agent) GetMetrics(ctx context.Context, req *pb.GetMetricsRequest) (*pb.Metrics, error) {
	return nil, unimplemented("GetMetrics")
}

// OnlineCPUMem implements AgentService.OnlineCPUMem.
func (a *Agent) OnlineCPUMem(ctx context.Context, req *pb.OnlineCPUMemRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("OnlineCPUMem")
}

// ReseedRandomDev implements AgentService.ReseedRandomDev.
func (a *Agent) ReseedRandomDev(ctx context.Context, req *pb.ReseedRandomDevRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("ReseedRandomDev")
}

// GetGuestDetails implements AgentService.GetGuestDetails.
func (a *Agent) GetGuestDetails(ctx context.Context, req *pb.GuestDetailsRequest) (*pb.GuestDetailsResponse, error) {
	return nil, unimplemented("GetGuestDetails")
}

// MemHotplugByProbe implements AgentService.MemHotplugByProbe.
func (a *Agent) MemHotplugByProbe(ctx context.Context, req *pb.MemHotplugByProbeRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("MemHotplugByProbe")
}

// SetGuestDateTime implements AgentService.SetGuestDateTime.
func (a *Agent) SetGuestDateTime(ctx context.Context, req *pb.SetGuestDateTimeRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("SetGuestDateTime")
}

// CopyFile implements AgentService.CopyFile.
func (a *Agent) CopyFile(ctx context.Context, req *pb.CopyFileRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("CopyFile")
}

// AddSwap implements AgentService.AddSwap.
func (a *Agent) AddSwap(ctx context.Context, req *pb.AddSwapRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("AddSwap")
}

// GetVolumeStats implements AgentService.GetVolumeStats.
func (a *Agent) GetVolumeStats(ctx context.Context, req *pb.VolumeStatsRequest) (*pb.VolumeStatsResponse, error) {
	return nil, unimplemented("GetVolumeStats")
}

// ResizeVolume implements AgentService.ResizeVolume.
func (a *Agent) ResizeVolume(ctx context.Context, req *pb.ResizeVolumeRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("ResizeVolume")
}

// SetPolicy implements AgentService.SetPolicy.
func (a *Agent) SetPolicy(ctx context.Context, req *pb.SetPolicyRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("SetPolicy")
}
