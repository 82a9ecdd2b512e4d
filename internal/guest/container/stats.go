package container

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
)

// Stats returns the container's cgroup statistics and the network
// statistics of its network namespace.
func (m *Manager) Stats(ctx context.Context, id string) (*pb.StatsContainerResponse, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	st, err := c.lc.Stats()
	if err != nil {
		return nil, fmt.Errorf("container_id %q: stats: %w", id, err)
	}
	resp := &pb.StatsContainerResponse{}
	if st.CgroupStats != nil {
		resp.CgroupStats = cgroupStats(st.CgroupStats)
		// memory.stat has no OOM kill count: it goes in the same map
		// (pb.OOMKillStat), for the shim's metrics (containerd's CRI
		// reads it to tell OOMKilled from an exit status of 137).
		if n, err := c.OOMKills(); err == nil {
			ms := resp.CgroupStats.MemoryStats
			if ms.Stats == nil {
				ms.Stats = map[string]uint64{}
			}
			ms.Stats[pb.OOMKillStat] = n
		}
	}
	resp.NetworkStats = c.networkStats()
	return resp, nil
}

func cgroupStats(s *cgroups.Stats) *pb.CgroupStats {
	cu := s.CpuStats.CpuUsage
	ms := s.MemoryStats
	out := &pb.CgroupStats{
		CpuStats: &pb.CpuStats{
			CpuUsage: &pb.CpuUsage{
				TotalUsage:        cu.TotalUsage,
				PercpuUsage:       cu.PercpuUsage,
				UsageInKernelmode: cu.UsageInKernelmode,
				UsageInUsermode:   cu.UsageInUsermode,
			},
			ThrottlingData: &pb.ThrottlingData{
				Periods:          s.CpuStats.ThrottlingData.Periods,
				ThrottledPeriods: s.CpuStats.ThrottlingData.ThrottledPeriods,
				ThrottledTime:    s.CpuStats.ThrottlingData.ThrottledTime,
			},
		},
		MemoryStats: &pb.MemoryStats{
			Cache:        ms.Cache,
			Usage:        memoryData(ms.Usage),
			SwapUsage:    memoryData(ms.SwapUsage),
			KernelUsage:  memoryData(ms.KernelUsage),
			UseHierarchy: ms.UseHierarchy,
			Stats:        ms.Stats,
		},
		PidsStats: &pb.PidsStats{Current: s.PidsStats.Current, Limit: s.PidsStats.Limit},
		BlkioStats: &pb.BlkioStats{
			IoServiceBytesRecursive: blkio(s.BlkioStats.IoServiceBytesRecursive),
			IoServicedRecursive:     blkio(s.BlkioStats.IoServicedRecursive),
			IoQueuedRecursive:       blkio(s.BlkioStats.IoQueuedRecursive),
			IoServiceTimeRecursive:  blkio(s.BlkioStats.IoServiceTimeRecursive),
			IoWaitTimeRecursive:     blkio(s.BlkioStats.IoWaitTimeRecursive),
			IoMergedRecursive:       blkio(s.BlkioStats.IoMergedRecursive),
			IoTimeRecursive:         blkio(s.BlkioStats.IoTimeRecursive),
			SectorsRecursive:        blkio(s.BlkioStats.SectorsRecursive),
		},
	}
	if len(s.HugetlbStats) > 0 {
		out.HugetlbStats = make(map[string]*pb.HugetlbStats, len(s.HugetlbStats))
		for k, v := range s.HugetlbStats {
			out.HugetlbStats[k] = &pb.HugetlbStats{Usage: v.Usage, MaxUsage: v.MaxUsage, Failcnt: v.Failcnt}
		}
	}
	return out
}

func memoryData(d cgroups.MemoryData) *pb.MemoryData {
	return &pb.MemoryData{Usage: d.Usage, MaxUsage: d.MaxUsage, Failcnt: d.Failcnt, Limit: d.Limit}
}

func blkio(es []cgroups.BlkioStatEntry) []*pb.BlkioStatsEntry {
	var out []*pb.BlkioStatsEntry
	for _, e := range es {
		out = append(out, &pb.BlkioStatsEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	return out
}

// networkStats reads the interface counters of the container's network
// namespace from /proc/<pid>/net/dev: the init's when the container has
// a namespace of its own, the agent's when it shares the sandbox's.
// The loopback interface is left out.
func (c *Container) networkStats() []*pb.NetworkStats {
	path := "/proc/self/net/dev"
	if c.prep.privateNetns {
		if c.init.isExited() {
			return nil
		}
		path = fmt.Sprintf("/proc/%d/net/dev", c.init.pid)
	}
	f, err := os.Open(path)
	if err != nil {
		c.log.Debug("network stats", "err", err)
		return nil
	}
	defer f.Close()
	return parseNetDev(bufio.NewScanner(f))
}

func parseNetDev(sc *bufio.Scanner) []*pb.NetworkStats {
	var out []*pb.NetworkStats
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 16 {
			continue
		}
		n := make([]uint64, 16)
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		// receive: bytes packets errs drop fifo frame compressed multicast;
		// transmit: bytes packets errs drop fifo colls carrier compressed
		out = append(out, &pb.NetworkStats{
			Name:    name,
			RxBytes: n[0], RxPackets: n[1], RxErrors: n[2], RxDropped: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDropped: n[11],
		})
	}
	return out
}

// mergeResources returns cur with what r sets replaced.
func mergeResources(cur *cgroups.Resources, r *specs.LinuxResources) (*cgroups.Resources, error) {
	r.Devices = nil
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		Spec: &specs.Spec{Root: &specs.Root{Path: "/"}, Linux: &specs.Linux{Resources: r}},
	}, nil)
	if err != nil {
		return nil, invalid("resources", "%v", err)
	}
	n := cg.Resources
	out := &cgroups.Resources{}
	if cur != nil {
		*out = *cur
	}
	if n.Memory != 0 {
		out.Memory = n.Memory
	}
	if n.MemoryReservation != 0 {
		out.MemoryReservation = n.MemoryReservation
	}
	if n.MemorySwap != 0 {
		out.MemorySwap = n.MemorySwap
	}
	if n.MemorySwappiness != nil {
		out.MemorySwappiness = n.MemorySwappiness
	}
	if n.OomKillDisable {
		out.OomKillDisable = true
	}
	if n.CpuShares != 0 {
		out.CpuShares, out.CpuWeight = n.CpuShares, n.CpuWeight
	}
	if n.CpuQuota != 0 {
		out.CpuQuota = n.CpuQuota
	}
	if n.CpuPeriod != 0 {
		out.CpuPeriod = n.CpuPeriod
	}
	if n.CpuRtRuntime != 0 {
		out.CpuRtRuntime = n.CpuRtRuntime
	}
	if n.CpuRtPeriod != 0 {
		out.CpuRtPeriod = n.CpuRtPeriod
	}
	if n.CpusetCpus != "" {
		out.CpusetCpus = n.CpusetCpus
	}
	if n.CpusetMems != "" {
		out.CpusetMems = n.CpusetMems
	}
	if n.PidsLimit != nil {
		out.PidsLimit = n.PidsLimit
	}
	if n.BlkioWeight != 0 {
		out.BlkioWeight = n.BlkioWeight
	}
	if n.BlkioLeafWeight != 0 {
		out.BlkioLeafWeight = n.BlkioLeafWeight
	}
	if len(n.BlkioWeightDevice) > 0 {
		out.BlkioWeightDevice = n.BlkioWeightDevice
	}
	if len(n.BlkioThrottleReadBpsDevice) > 0 {
		out.BlkioThrottleReadBpsDevice = n.BlkioThrottleReadBpsDevice
	}
	if len(n.BlkioThrottleWriteBpsDevice) > 0 {
		out.BlkioThrottleWriteBpsDevice = n.BlkioThrottleWriteBpsDevice
	}
	if len(n.BlkioThrottleReadIOPSDevice) > 0 {
		out.BlkioThrottleReadIOPSDevice = n.BlkioThrottleReadIOPSDevice
	}
	if len(n.BlkioThrottleWriteIOPSDevice) > 0 {
		out.BlkioThrottleWriteIOPSDevice = n.BlkioThrottleWriteIOPSDevice
	}
	if len(n.HugetlbLimit) > 0 {
		out.HugetlbLimit = n.HugetlbLimit
	}
	if n.NetClsClassid != 0 {
		out.NetClsClassid = n.NetClsClassid
	}
	if len(n.NetPrioIfpriomap) > 0 {
		out.NetPrioIfpriomap = n.NetPrioIfpriomap
	}
	return out, nil
}
