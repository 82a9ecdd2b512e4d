package vc

import (
	pb "github.com/virtcontainers/vc/api/agent"
)

// ContainerStats are a container's cgroup and network statistics, as the
// guest reads them. A part the guest did not report is nil.
type ContainerStats struct {
	CPU    *CPUStats
	Memory *MemoryStats
	Pids   *PidsStats
	Blkio  *BlkioStats
	// Hugetlb is keyed by page size ("2MB").
	Hugetlb map[string]HugetlbStats
	// Network has one entry per interface of the sandbox.
	Network []NetworkStats
}

// CPUStats are in nanoseconds.
type CPUStats struct {
	TotalNs, KernelNs, UserNs uint64
	PerCPUNs                  []uint64
	// Throttling by the CPU quota.
	Periods, ThrottledPeriods, ThrottledNs uint64
}

// MemoryStats are in bytes. Stats are the cgroup's memory.stat keys,
// which differ between cgroup v1 and v2; OOMKillStat is among them where
// the guest counts OOM kills.
type MemoryStats struct {
	Cache        uint64
	Usage        MemoryData
	Swap         MemoryData
	Kernel       MemoryData
	UseHierarchy bool
	Stats        map[string]uint64
}

// OOMKillStat is the MemoryStats.Stats key counting the container's OOM
// kills.
const OOMKillStat = pb.OOMKillStat

// MemoryData is one memory counter with its peak, limit and failures.
type MemoryData struct {
	Usage, MaxUsage, Failcnt, Limit uint64
}

// PidsStats counts the container's processes.
type PidsStats struct {
	Current, Limit uint64
}

// BlkioStats are cgroup v1's blkio counters (the guest maps v2's io.stat
// onto them).
type BlkioStats struct {
	ServiceBytes, Serviced, Queued, ServiceTime, WaitTime, Merged, Time, Sectors []BlkioEntry
}

// BlkioEntry is one counter of one device.
type BlkioEntry struct {
	Major, Minor uint64
	Op           string
	Value        uint64
}

// HugetlbStats are in bytes.
type HugetlbStats struct {
	Usage, MaxUsage, Failcnt uint64
}

// NetworkStats are one interface's counters.
type NetworkStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// statsFromProto converts the agent's answer; nil gives empty stats.
func statsFromProto(r *pb.StatsContainerResponse) *ContainerStats {
	out := &ContainerStats{}
	for _, n := range r.GetNetworkStats() {
		out.Network = append(out.Network, NetworkStats{
			Name:    n.GetName(),
			RxBytes: n.GetRxBytes(), RxPackets: n.GetRxPackets(), RxErrors: n.GetRxErrors(), RxDropped: n.GetRxDropped(),
			TxBytes: n.GetTxBytes(), TxPackets: n.GetTxPackets(), TxErrors: n.GetTxErrors(), TxDropped: n.GetTxDropped(),
		})
	}
	cs := r.GetCgroupStats()
	if c := cs.GetCpuStats(); c != nil {
		u, t := c.GetCpuUsage(), c.GetThrottlingData()
		out.CPU = &CPUStats{
			TotalNs: u.GetTotalUsage(), KernelNs: u.GetUsageInKernelmode(), UserNs: u.GetUsageInUsermode(),
			PerCPUNs: u.GetPercpuUsage(),
			Periods:  t.GetPeriods(), ThrottledPeriods: t.GetThrottledPeriods(), ThrottledNs: t.GetThrottledTime(),
		}
	}
	if m := cs.GetMemoryStats(); m != nil {
		out.Memory = &MemoryStats{
			Cache:        m.GetCache(),
			Usage:        memoryData(m.GetUsage()),
			Swap:         memoryData(m.GetSwapUsage()),
			Kernel:       memoryData(m.GetKernelUsage()),
			UseHierarchy: m.GetUseHierarchy(),
			Stats:        m.GetStats(),
		}
	}
	if p := cs.GetPidsStats(); p != nil {
		out.Pids = &PidsStats{Current: p.GetCurrent(), Limit: p.GetLimit()}
	}
	if b := cs.GetBlkioStats(); b != nil {
		out.Blkio = &BlkioStats{
			ServiceBytes: blkio(b.GetIoServiceBytesRecursive()),
			Serviced:     blkio(b.GetIoServicedRecursive()),
			Queued:       blkio(b.GetIoQueuedRecursive()),
			ServiceTime:  blkio(b.GetIoServiceTimeRecursive()),
			WaitTime:     blkio(b.GetIoWaitTimeRecursive()),
			Merged:       blkio(b.GetIoMergedRecursive()),
			Time:         blkio(b.GetIoTimeRecursive()),
			Sectors:      blkio(b.GetSectorsRecursive()),
		}
	}
	if h := cs.GetHugetlbStats(); len(h) > 0 {
		out.Hugetlb = make(map[string]HugetlbStats, len(h))
		for size, s := range h {
			out.Hugetlb[size] = HugetlbStats{Usage: s.GetUsage(), MaxUsage: s.GetMaxUsage(), Failcnt: s.GetFailcnt()}
		}
	}
	return out
}

func memoryData(d *pb.MemoryData) MemoryData {
	return MemoryData{Usage: d.GetUsage(), MaxUsage: d.GetMaxUsage(), Failcnt: d.GetFailcnt(), Limit: d.GetLimit()}
}

func blkio(es []*pb.BlkioStatsEntry) []BlkioEntry {
	var out []BlkioEntry
	for _, e := range es {
		out = append(out, BlkioEntry{Major: e.GetMajor(), Minor: e.GetMinor(), Op: e.GetOp(), Value: e.GetValue()})
	}
	return out
}
