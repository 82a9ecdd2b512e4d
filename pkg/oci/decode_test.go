package oci

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
)

func TestFromProto(t *testing.T) {
	in := &pb.Spec{
		Process: &pb.Process{Args: []string{"a"}, User: &pb.User{UID: 5}, OOMScoreAdj: -3},
		Root:    &pb.Root{Path: "/r"},
		Linux: &pb.Linux{
			Resources: &pb.LinuxResources{
				Devices: []*pb.LinuxDeviceCgroup{
					{Allow: false, Access: "rwm", Major: -1, Minor: -1},
					{Allow: false, Access: "rwm"}, // 0:0 is no device: any
					{Allow: true, Type: "c", Major: 5, Minor: 0, Access: "rw"},
					{Allow: true, Type: "c", Major: 136, Minor: -1, Access: "rw"},
				},
				Memory: &pb.LinuxMemory{Limit: 100},
				Pids:   &pb.LinuxPids{Limit: 0},
			},
			Seccomp: &pb.LinuxSeccomp{Syscalls: []*pb.LinuxSyscall{{Names: []string{"x"}, ErrnoRet: &pb.LinuxSyscall_Errnoret{Errnoret: 1}}, nil}},
			Devices: []*pb.LinuxDevice{nil, {Path: "/dev/x"}},
		},
		Mounts: []*pb.Mount{nil, {Destination: "/d"}},
	}
	s := FromProto(in)
	if s.Version != specs.Version || s.Process.User.UID != 5 || *s.Process.OOMScoreAdj != -3 {
		t.Errorf("process %+v", s.Process)
	}
	d := s.Linux.Resources.Devices
	if d[0].Major != nil || d[0].Minor != nil || d[1].Major != nil || d[1].Minor != nil {
		t.Error("wildcard rules got numbers")
	}
	if *d[2].Major != 5 || *d[2].Minor != 0 || *d[3].Major != 136 || d[3].Minor != nil {
		t.Errorf("rules %+v %+v", d[2], d[3])
	}
	if *s.Linux.Resources.Memory.Limit != 100 || s.Linux.Resources.Memory.Swap != nil || s.Linux.Resources.Pids != nil {
		t.Errorf("resources %+v", s.Linux.Resources)
	}
	if len(s.Mounts) != 1 || len(s.Linux.Devices) != 1 || len(s.Linux.Seccomp.Syscalls) != 1 || *s.Linux.Seccomp.Syscalls[0].ErrnoRet != 1 {
		t.Errorf("nil entries not skipped: %+v", s)
	}
	// Nothing set, nothing panics.
	if s := FromProto(&pb.Spec{Linux: &pb.Linux{Resources: &pb.LinuxResources{BlockIO: &pb.LinuxBlockIO{}, CPU: &pb.LinuxCPU{}, Network: &pb.LinuxNetwork{}}}}); s.Process != nil {
		t.Error("process out of nothing")
	}
}
