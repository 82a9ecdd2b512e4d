package vc

import (
	"reflect"
	"testing"

	pb "github.com/virtcontainers/vc/api/agent"
)

// The agent's statistics become the library's, field for field; a part
// the agent left out stays nil.
func TestStatsFromProto(t *testing.T) {
	entry := []*pb.BlkioStatsEntry{{Major: 8, Minor: 1, Op: "Read", Value: 42}}
	in := &pb.StatsContainerResponse{
		CgroupStats: &pb.CgroupStats{
			CpuStats: &pb.CpuStats{
				CpuUsage:       &pb.CpuUsage{TotalUsage: 1000, PercpuUsage: []uint64{600, 400}, UsageInKernelmode: 300, UsageInUsermode: 700},
				ThrottlingData: &pb.ThrottlingData{Periods: 5, ThrottledPeriods: 2, ThrottledTime: 9},
			},
			MemoryStats: &pb.MemoryStats{
				Cache:        50,
				Usage:        &pb.MemoryData{Usage: 4096, MaxUsage: 8192, Failcnt: 1, Limit: 1 << 30},
				SwapUsage:    &pb.MemoryData{Usage: 1, MaxUsage: 2, Failcnt: 3, Limit: 4},
				KernelUsage:  &pb.MemoryData{Usage: 5},
				UseHierarchy: true,
				Stats:        map[string]uint64{"anon": 3000, pb.OOMKillStat: 1},
			},
			PidsStats: &pb.PidsStats{Current: 3, Limit: 100},
			BlkioStats: &pb.BlkioStats{
				IoServiceBytesRecursive: entry, IoServicedRecursive: entry, IoQueuedRecursive: entry, IoServiceTimeRecursive: entry,
				IoWaitTimeRecursive: entry, IoMergedRecursive: entry, IoTimeRecursive: entry, SectorsRecursive: entry,
			},
			HugetlbStats: map[string]*pb.HugetlbStats{"2MB": {Usage: 1, MaxUsage: 2, Failcnt: 3}},
		},
		NetworkStats: []*pb.NetworkStats{{Name: "eth0", RxBytes: 1, RxPackets: 2, RxErrors: 3, RxDropped: 4, TxBytes: 5, TxPackets: 6, TxErrors: 7, TxDropped: 8}},
	}
	e := []BlkioEntry{{Major: 8, Minor: 1, Op: "Read", Value: 42}}
	want := &ContainerStats{
		CPU: &CPUStats{TotalNs: 1000, KernelNs: 300, UserNs: 700, PerCPUNs: []uint64{600, 400}, Periods: 5, ThrottledPeriods: 2, ThrottledNs: 9},
		Memory: &MemoryStats{
			Cache:        50,
			Usage:        MemoryData{Usage: 4096, MaxUsage: 8192, Failcnt: 1, Limit: 1 << 30},
			Swap:         MemoryData{Usage: 1, MaxUsage: 2, Failcnt: 3, Limit: 4},
			Kernel:       MemoryData{Usage: 5},
			UseHierarchy: true,
			Stats:        map[string]uint64{"anon": 3000, OOMKillStat: 1},
		},
		Pids:    &PidsStats{Current: 3, Limit: 100},
		Blkio:   &BlkioStats{ServiceBytes: e, Serviced: e, Queued: e, ServiceTime: e, WaitTime: e, Merged: e, Time: e, Sectors: e},
		Hugetlb: map[string]HugetlbStats{"2MB": {Usage: 1, MaxUsage: 2, Failcnt: 3}},
		Network: []NetworkStats{{Name: "eth0", RxBytes: 1, RxPackets: 2, RxErrors: 3, RxDropped: 4, TxBytes: 5, TxPackets: 6, TxErrors: 7, TxDropped: 8}},
	}
	if got := statsFromProto(in); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got := statsFromProto(&pb.StatsContainerResponse{}); !reflect.DeepEqual(got, &ContainerStats{}) {
		t.Errorf("empty answer: %+v", got)
	}
	if got := statsFromProto(nil); !reflect.DeepEqual(got, &ContainerStats{}) {
		t.Errorf("nil answer: %+v", got)
	}
}
