package guest

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	pb "github.com/virtcontainers/vc/api/agent"
)

// UpdateInterface implements AgentService.UpdateInterface.
func (a *Agent) UpdateInterface(ctx context.Context, req *pb.UpdateInterfaceRequest) (*pb.Interface, error) {
	return nil, unimplemented("UpdateInterface")
}

// UpdateRoutes implements AgentService.UpdateRoutes.
func (a *Agent) UpdateRoutes(ctx context.Context, req *pb.UpdateRoutesRequest) (*pb.Routes, error) {
	return nil, unimplemented("UpdateRoutes")
}

// ListInterfaces implements AgentService.ListInterfaces.
func (a *Agent) ListInterfaces(ctx context.Context, req *pb.ListInterfacesRequest) (*pb.Interfaces, error) {
	return nil, unimplemented("ListInterfaces")
}

// ListRoutes implements AgentService.ListRoutes.
func (a *Agent) ListRoutes(ctx context.Context, req *pb.ListRoutesRequest) (*pb.Routes, error) {
	return nil, unimplemented("ListRoutes")
}

// AddARPNeighbors implements AgentService.AddARPNeighbors.
func (a *Agent) AddARPNeighbors(ctx context.Context, req *pb.AddARPNeighborsRequest) (*emptypb.Empty, error) {
	return nil, unimplemented("AddARPNeighbors")
}

// GetIPTables implements AgentService.GetIPTables.
func (a *Agent) GetIPTables(ctx context.Context, req *pb.GetIPTablesRequest) (*pb.GetIPTablesResponse, error) {
	return nil, unimplemented("GetIPTables")
}

// SetIPTables implements AgentService.SetIPTables.
func (a *Agent) SetIPTables(ctx context.Context, req *pb.SetIPTablesRequest) (*pb.SetIPTablesResponse, error) {
	return nil, unimplemented("SetIPTables")
}
