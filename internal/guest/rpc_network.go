package guest

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/kmod"
	"github.com/virtcontainers/vc/internal/guest/network"
)

// guestNetwork is what the network RPCs configure: the agent's own
// network namespace. The Agent has no field for it (server.go is not
// this file's), so it is package state; tests in this package point it at
// a namespace of their own.
var guestNetwork = network.New()

// iptables runs the iptables tools through the agent's reaper.
func (a *Agent) iptables() network.IPTables {
	return network.IPTables{Runner: a.reaper}
}

// UpdateInterface implements AgentService.UpdateInterface.
func (a *Agent) UpdateInterface(ctx context.Context, req *pb.UpdateInterfaceRequest) (*pb.Interface, error) {
	// A NIC hotplugged into a sandbox that booted without one needs its
	// driver now.
	if err := kmod.EnsureGroup("net"); err != nil {
		return nil, err
	}
	return guestNetwork.UpdateInterface(ctx, req.GetInterface())
}

// UpdateRoutes implements AgentService.UpdateRoutes.
func (a *Agent) UpdateRoutes(ctx context.Context, req *pb.UpdateRoutesRequest) (*pb.Routes, error) {
	rs, err := guestNetwork.UpdateRoutes(ctx, req.GetRoutes())
	if err != nil {
		return nil, err
	}
	return &pb.Routes{Routes: rs}, nil
}

// ListInterfaces implements AgentService.ListInterfaces.
func (a *Agent) ListInterfaces(ctx context.Context, req *pb.ListInterfacesRequest) (*pb.Interfaces, error) {
	ifs, err := guestNetwork.ListInterfaces(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.Interfaces{Interfaces: ifs}, nil
}

// ListRoutes implements AgentService.ListRoutes.
func (a *Agent) ListRoutes(ctx context.Context, req *pb.ListRoutesRequest) (*pb.Routes, error) {
	rs, err := guestNetwork.ListRoutes(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.Routes{Routes: rs}, nil
}

// AddARPNeighbors implements AgentService.AddARPNeighbors.
func (a *Agent) AddARPNeighbors(ctx context.Context, req *pb.AddARPNeighborsRequest) (*emptypb.Empty, error) {
	if err := guestNetwork.AddARPNeighbors(ctx, req.GetNeighbors()); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetIPTables implements AgentService.GetIPTables.
func (a *Agent) GetIPTables(ctx context.Context, req *pb.GetIPTablesRequest) (*pb.GetIPTablesResponse, error) {
	data, err := a.iptables().Save(ctx, req.GetIsIpv6())
	if err != nil {
		return nil, err
	}
	return &pb.GetIPTablesResponse{Data: data}, nil
}

// SetIPTables implements AgentService.SetIPTables.
func (a *Agent) SetIPTables(ctx context.Context, req *pb.SetIPTablesRequest) (*pb.SetIPTablesResponse, error) {
	out, err := a.iptables().Restore(ctx, req.GetIsIpv6(), req.GetData())
	if err != nil {
		return nil, err
	}
	return &pb.SetIPTablesResponse{Data: out}, nil
}
