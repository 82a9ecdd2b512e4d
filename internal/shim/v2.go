package shim

import (
	"context"
	"fmt"

	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// v2Service serves task API v2 (containerd 1.x) with the v3 service: the
// v3 messages are copies of v2's with the same field numbers, so each
// request and response is converted through its wire form.
type v2Service struct{ s *Service }

var _ taskv2.TTRPCTaskService = (*v2Service)(nil)

// bridge converts a v2 request to v3 (in), calls fn, and converts its
// response back to v2 (out).
func bridge[Req, V3Req, V3Resp, Resp proto.Message](ctx context.Context, r Req, in V3Req, out Resp, fn func(context.Context, V3Req) (V3Resp, error)) (Resp, error) {
	var zero Resp
	if err := convert(r, in); err != nil {
		return zero, err
	}
	resp, err := fn(ctx, in)
	if err != nil {
		return zero, err
	}
	if err := convert(resp, out); err != nil {
		return zero, err
	}
	return out, nil
}

func convert(from, to proto.Message) error {
	b, err := proto.Marshal(from)
	if err == nil {
		err = proto.Unmarshal(b, to)
	}
	if err != nil {
		return errgrpc.ToGRPC(fmt.Errorf("task API v2: convert %T: %w: %w", from, err, errdefs.ErrInvalidArgument))
	}
	return nil
}

func (v *v2Service) State(ctx context.Context, r *taskv2.StateRequest) (*taskv2.StateResponse, error) {
	return bridge(ctx, r, &taskAPI.StateRequest{}, &taskv2.StateResponse{}, v.s.State)
}

func (v *v2Service) Create(ctx context.Context, r *taskv2.CreateTaskRequest) (*taskv2.CreateTaskResponse, error) {
	return bridge(ctx, r, &taskAPI.CreateTaskRequest{}, &taskv2.CreateTaskResponse{}, v.s.Create)
}

func (v *v2Service) Start(ctx context.Context, r *taskv2.StartRequest) (*taskv2.StartResponse, error) {
	return bridge(ctx, r, &taskAPI.StartRequest{}, &taskv2.StartResponse{}, v.s.Start)
}

func (v *v2Service) Delete(ctx context.Context, r *taskv2.DeleteRequest) (*taskv2.DeleteResponse, error) {
	return bridge(ctx, r, &taskAPI.DeleteRequest{}, &taskv2.DeleteResponse{}, v.s.Delete)
}

func (v *v2Service) Pids(ctx context.Context, r *taskv2.PidsRequest) (*taskv2.PidsResponse, error) {
	return bridge(ctx, r, &taskAPI.PidsRequest{}, &taskv2.PidsResponse{}, v.s.Pids)
}

func (v *v2Service) Pause(ctx context.Context, r *taskv2.PauseRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.PauseRequest{}, &emptypb.Empty{}, v.s.Pause)
}

func (v *v2Service) Resume(ctx context.Context, r *taskv2.ResumeRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.ResumeRequest{}, &emptypb.Empty{}, v.s.Resume)
}

func (v *v2Service) Checkpoint(ctx context.Context, r *taskv2.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.CheckpointTaskRequest{}, &emptypb.Empty{}, v.s.Checkpoint)
}

func (v *v2Service) Kill(ctx context.Context, r *taskv2.KillRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.KillRequest{}, &emptypb.Empty{}, v.s.Kill)
}

func (v *v2Service) Exec(ctx context.Context, r *taskv2.ExecProcessRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.ExecProcessRequest{}, &emptypb.Empty{}, v.s.Exec)
}

func (v *v2Service) ResizePty(ctx context.Context, r *taskv2.ResizePtyRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.ResizePtyRequest{}, &emptypb.Empty{}, v.s.ResizePty)
}

func (v *v2Service) CloseIO(ctx context.Context, r *taskv2.CloseIORequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.CloseIORequest{}, &emptypb.Empty{}, v.s.CloseIO)
}

func (v *v2Service) Update(ctx context.Context, r *taskv2.UpdateTaskRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.UpdateTaskRequest{}, &emptypb.Empty{}, v.s.Update)
}

func (v *v2Service) Wait(ctx context.Context, r *taskv2.WaitRequest) (*taskv2.WaitResponse, error) {
	return bridge(ctx, r, &taskAPI.WaitRequest{}, &taskv2.WaitResponse{}, v.s.Wait)
}

func (v *v2Service) Stats(ctx context.Context, r *taskv2.StatsRequest) (*taskv2.StatsResponse, error) {
	return bridge(ctx, r, &taskAPI.StatsRequest{}, &taskv2.StatsResponse{}, v.s.Stats)
}

func (v *v2Service) Connect(ctx context.Context, r *taskv2.ConnectRequest) (*taskv2.ConnectResponse, error) {
	return bridge(ctx, r, &taskAPI.ConnectRequest{}, &taskv2.ConnectResponse{}, v.s.Connect)
}

func (v *v2Service) Shutdown(ctx context.Context, r *taskv2.ShutdownRequest) (*emptypb.Empty, error) {
	return bridge(ctx, r, &taskAPI.ShutdownRequest{}, &emptypb.Empty{}, v.s.Shutdown)
}
