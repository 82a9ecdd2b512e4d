package guest

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// containerState is the agent's container and sandbox state.
type containerState struct{}

func (s *containerState) init(a *Agent) {}

// close kills and removes every container.
func (s *containerState) close() {}

// CreateContainer implements AgentService.CreateContainer.
func (a *Agent) CreateContainer(ctx context.Context, req *pb.CreateContainerRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("CreateContainer")
}

// StartContainer implements AgentService.StartContainer.
func (a *Agent) StartContainer(ctx context.Context, req *pb.StartContainerRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("StartContainer")
}

// RemoveContainer implements AgentService.RemoveContainer.
func (a *Agent) RemoveContainer(ctx context.Context, req *pb.RemoveContainerRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("RemoveContainer")
}

// ExecProcess implements AgentService.ExecProcess.
func (a *Agent) ExecProcess(ctx context.Context, req *pb.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("ExecProcess")
}

// SignalProcess implements AgentService.SignalProcess.
func (a *Agent) SignalProcess(ctx context.Context, req *pb.SignalProcessRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("SignalProcess")
}

// WaitProcess implements AgentService.WaitProcess.
func (a *Agent) WaitProcess(ctx context.Context, req *pb.WaitProcessRequest) (*pb.WaitProcessResponse, error) {
	return nil, unimplemented("WaitProcess")
}

// UpdateContainer implements AgentService.UpdateContainer.
func (a *Agent) UpdateContainer(ctx context.Context, req *pb.UpdateContainerRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("UpdateContainer")
}

// StatsContainer implements AgentService.StatsContainer.
func (a *Agent) StatsContainer(ctx context.Context, req *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error) {
	return nil, unimplemented("StatsContainer")
}

// PauseContainer implements AgentService.PauseContainer.
func (a *Agent) PauseContainer(ctx context.Context, req *pb.PauseContainerRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("PauseContainer")
}

// ResumeContainer implements AgentService.ResumeContainer.
func (a *Agent) ResumeContainer(ctx context.Context, req *pb.ResumeContainerRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("ResumeContainer")
}

// WriteStdin implements AgentService.WriteStdin.
func (a *Agent) WriteStdin(ctx context.Context, req *pb.WriteStreamRequest) (*pb.WriteStreamResponse, error) {
	return nil, unimplemented("WriteStdin")
}

// ReadStdout implements AgentService.ReadStdout.
func (a *Agent) ReadStdout(ctx context.Context, req *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	return nil, unimplemented("ReadStdout")
}

// ReadStderr implements AgentService.ReadStderr.
func (a *Agent) ReadStderr(ctx context.Context, req *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	return nil, unimplemented("ReadStderr")
}

// CloseStdin implements AgentService.CloseStdin.
func (a *Agent) CloseStdin(ctx context.Context, req *pb.CloseStdinRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("CloseStdin")
}

// TtyWinResize implements AgentService.TtyWinResize.
func (a *Agent) TtyWinResize(ctx context.Context, req *pb.TtyWinResizeRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("TtyWinResize")
}

// CreateSandbox implements AgentService.CreateSandbox.
func (a *Agent) CreateSandbox(ctx context.Context, req *pb.CreateSandboxRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("CreateSandbox")
}

// DestroySandbox implements AgentService.DestroySandbox.
func (a *Agent) DestroySandbox(ctx context.Context, req *pb.DestroySandboxRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("DestroySandbox")
}

// GetOOMEvent implements AgentService.GetOOMEvent.
func (a *Agent) GetOOMEvent(ctx context.Context, req *pb.GetOOMEventRequest) (*pb.OOMEvent, error) {
	return nil, unimplemented("GetOOMEvent")
}

// GetDiagnosticData implements AgentService.GetDiagnosticData.
func (a *Agent) GetDiagnosticData(ctx context.Context, req *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	return nil, unimplemented("GetDiagnosticData")
}
