package guest

import (
	"context"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/container"
	"github.com/virtcontainers/vc/internal/guest/storage"
)

// The container RPCs check their arguments here and leave the work to
// package container.
//
// ReadStdout and ReadStderr end a stream with container.ErrEOF, which the
// interceptor turns into ttRPC code OutOfRange: a host reads until it
// gets that code, and every byte the process wrote comes before it.

const (
	// defaultReadLen is what a read asks for when len is 0.
	defaultReadLen = 64 << 10
	// maxReadLen keeps replies well under ttRPC's 4 MiB message limit.
	maxReadLen = 1 << 20
)

// containerState is the agent's container and sandbox state.
type containerState struct {
	m *container.Manager
}

func (s *containerState) init(a *Agent) {
	s.m = container.New(container.Config{
		Root:    a.cfg.ContainerRoot,
		Reaper:  a.reaper,
		Log:     a.log,
		Mount:   tracedMount, // trace.go
		Unmount: storage.Unmount,
		// Below the sandbox root, where nothing but the agent mounts.
		NamespaceDir: filepath.Join(a.cfg.SandboxRoot, "ns"),
		BeforeOutput: a.holdForListeners,
	})
}

// close kills and removes every container.
func (s *containerState) close() {
	s.m.Close()
}

// idPattern is what libcontainer accepts as a container id.
var idPattern = regexp.MustCompile(`^[\w+\-.]+$`)

func checkContainerID(id string) error {
	if id == "" {
		return invalid("container_id", "empty")
	}
	if len(id) > 1024 || !idPattern.MatchString(id) || id == "." || id == ".." {
		return invalid("container_id", "%q: only letters, digits, '_', '+', '-' and '.' are allowed", id)
	}
	return nil
}

// checkID checks the container id of a request about an existing
// container: unknown ids are NotFound, found by the manager.
func checkID(id string) error {
	if id == "" {
		return invalid("container_id", "empty")
	}
	return nil
}

// CreateContainer implements AgentService.CreateContainer.
func (a *Agent) CreateContainer(ctx context.Context, req *pb.CreateContainerRequest) (*emptypb.Empty, error) {
	if err := checkContainerID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if req.GetOCI() == nil {
		return nil, invalid("OCI", "missing")
	}
	if err := a.ctr.m.Create(ctx, req); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// StartContainer implements AgentService.StartContainer.
func (a *Agent) StartContainer(ctx context.Context, req *pb.StartContainerRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := a.ctr.m.Start(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// RemoveContainer implements AgentService.RemoveContainer.
func (a *Agent) RemoveContainer(ctx context.Context, req *pb.RemoveContainerRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	if err := a.ctr.m.Remove(ctx, req.GetContainerId(), timeout); err != nil {
		return nil, err
	}
	a.closeSockProxies(req.GetContainerId())
	a.dropCachesSoon() // dropcaches.go
	return &emptypb.Empty{}, nil
}

// ExecProcess implements AgentService.ExecProcess.
func (a *Agent) ExecProcess(ctx context.Context, req *pb.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if req.GetExecId() == "" {
		return nil, invalid("exec_id", "empty")
	}
	if req.GetProcess() == nil {
		return nil, invalid("process", "missing")
	}
	if len(req.GetProcess().GetArgs()) == 0 {
		return nil, invalid("process.Args", "empty")
	}
	if err := a.ctr.m.Exec(ctx, req); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// SignalProcess implements AgentService.SignalProcess.
func (a *Agent) SignalProcess(ctx context.Context, req *pb.SignalProcessRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	sig := req.GetSignal()
	if sig > 64 {
		return nil, invalid("signal", "%d is not a signal number", sig)
	}
	if err := a.ctr.m.Signal(ctx, req.GetContainerId(), req.GetExecId(), unix.Signal(sig)); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// WaitProcess implements AgentService.WaitProcess.
func (a *Agent) WaitProcess(ctx context.Context, req *pb.WaitProcessRequest) (*pb.WaitProcessResponse, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	st, err := a.ctr.m.Wait(ctx, req.GetContainerId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	return &pb.WaitProcessResponse{Status: int32(st)}, nil
}

// UpdateContainer implements AgentService.UpdateContainer.
func (a *Agent) UpdateContainer(ctx context.Context, req *pb.UpdateContainerRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if req.GetResources() == nil {
		return nil, invalid("resources", "missing")
	}
	if err := a.ctr.m.Update(ctx, req.GetContainerId(), req.GetResources()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// StatsContainer implements AgentService.StatsContainer.
func (a *Agent) StatsContainer(ctx context.Context, req *pb.StatsContainerRequest) (*pb.StatsContainerResponse, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	return a.ctr.m.Stats(ctx, req.GetContainerId())
}

// PauseContainer implements AgentService.PauseContainer.
func (a *Agent) PauseContainer(ctx context.Context, req *pb.PauseContainerRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := a.ctr.m.Pause(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// ResumeContainer implements AgentService.ResumeContainer.
func (a *Agent) ResumeContainer(ctx context.Context, req *pb.ResumeContainerRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := a.ctr.m.Resume(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// WriteStdin implements AgentService.WriteStdin.
func (a *Agent) WriteStdin(ctx context.Context, req *pb.WriteStreamRequest) (*pb.WriteStreamResponse, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	n, err := a.ctr.m.WriteStdin(ctx, req.GetContainerId(), req.GetExecId(), req.GetData())
	if err != nil {
		return nil, err
	}
	return &pb.WriteStreamResponse{Len: uint32(n)}, nil
}

func readLen(n uint32) int {
	switch {
	case n == 0:
		return defaultReadLen
	case n > maxReadLen:
		return maxReadLen
	}
	return int(n)
}

// ReadStdout implements AgentService.ReadStdout. It blocks until there
// is output; at the end of the stream it fails with code OutOfRange.
func (a *Agent) ReadStdout(ctx context.Context, req *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	b, err := a.ctr.m.ReadStdout(ctx, req.GetContainerId(), req.GetExecId(), readLen(req.GetLen()))
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		a.holdForListeners(ctx)
	}
	return &pb.ReadStreamResponse{Data: b}, nil
}

// ReadStderr implements AgentService.ReadStderr, as ReadStdout.
func (a *Agent) ReadStderr(ctx context.Context, req *pb.ReadStreamRequest) (*pb.ReadStreamResponse, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	b, err := a.ctr.m.ReadStderr(ctx, req.GetContainerId(), req.GetExecId(), readLen(req.GetLen()))
	if err != nil {
		return nil, err
	}
	if len(b) > 0 {
		a.holdForListeners(ctx)
	}
	return &pb.ReadStreamResponse{Data: b}, nil
}

// CloseStdin implements AgentService.CloseStdin.
func (a *Agent) CloseStdin(ctx context.Context, req *pb.CloseStdinRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if err := a.ctr.m.CloseStdin(ctx, req.GetContainerId(), req.GetExecId()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// TtyWinResize implements AgentService.TtyWinResize.
func (a *Agent) TtyWinResize(ctx context.Context, req *pb.TtyWinResizeRequest) (*emptypb.Empty, error) {
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	if req.GetRow() > 0xffff {
		return nil, invalid("row", "%d is too large", req.GetRow())
	}
	if req.GetColumn() > 0xffff {
		return nil, invalid("column", "%d is too large", req.GetColumn())
	}
	if err := a.ctr.m.Resize(ctx, req.GetContainerId(), req.GetExecId(), req.GetRow(), req.GetColumn()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// CreateSandbox implements AgentService.CreateSandbox.
func (a *Agent) CreateSandbox(ctx context.Context, req *pb.CreateSandboxRequest) (*emptypb.Empty, error) {
	if err := a.ctr.m.CreateSandbox(ctx, req); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// DestroySandbox implements AgentService.DestroySandbox: it removes every
// container, undoes CreateSandbox, then has the agent shut down (even if
// something failed: the sandbox is over either way).
func (a *Agent) DestroySandbox(ctx context.Context, req *pb.DestroySandboxRequest) (*emptypb.Empty, error) {
	err := a.ctr.m.DestroySandbox(ctx)
	if a.cfg.Shutdown != nil {
		a.cfg.Shutdown()
	}
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetOOMEvent implements AgentService.GetOOMEvent.
func (a *Agent) GetOOMEvent(ctx context.Context, req *pb.GetOOMEventRequest) (*pb.OOMEvent, error) {
	id, err := a.ctr.m.OOMEvent(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.OOMEvent{ContainerId: id}, nil
}

// GetDiagnosticData implements AgentService.GetDiagnosticData.
func (a *Agent) GetDiagnosticData(ctx context.Context, req *pb.GetDiagnosticDataRequest) (*pb.GetDiagnosticDataResponse, error) {
	switch req.GetLogType() {
	case "termination_log":
	default:
		return nil, invalid("log_type", "%q is not known (known: termination_log)", req.GetLogType())
	}
	if err := checkID(req.GetContainerId()); err != nil {
		return nil, err
	}
	b, err := a.ctr.m.TerminationLog(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	return &pb.GetDiagnosticDataResponse{Data: b}, nil
}
