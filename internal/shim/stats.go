package shim

import (
	"sort"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"

	pb "github.com/virtcontainers/vc/api/agent"
)

// toMetrics turns the agent's container statistics into the cgroup v1
// metrics containerd and its CRI plugin decode from a task's Stats (what
// runc-v2 returns on a cgroup v1 host). The guest may run cgroup v1 or v2:
// the agent passes libcontainer's memory.stat keys through, which differ,
// so each field takes the v1 key or its v2 counterpart. A nil response
// gives empty metrics.
func toMetrics(r *pb.StatsContainerResponse) *cg1.Metrics {
	m := &cg1.Metrics{}
	if r == nil {
		return m
	}
	for _, n := range r.GetNetworkStats() {
		m.Network = append(m.Network, &cg1.NetworkStat{
			Name:    n.GetName(),
			RxBytes: n.GetRxBytes(), RxPackets: n.GetRxPackets(), RxErrors: n.GetRxErrors(), RxDropped: n.GetRxDropped(),
			TxBytes: n.GetTxBytes(), TxPackets: n.GetTxPackets(), TxErrors: n.GetTxErrors(), TxDropped: n.GetTxDropped(),
		})
	}
	cs := r.GetCgroupStats()
	if cs == nil {
		return m
	}
	if c := cs.GetCpuStats(); c != nil {
		u, t := c.GetCpuUsage(), c.GetThrottlingData()
		m.CPU = &cg1.CPUStat{
			Usage: &cg1.CPUUsage{
				Total:  u.GetTotalUsage(),
				Kernel: u.GetUsageInKernelmode(),
				User:   u.GetUsageInUsermode(),
				PerCPU: u.GetPercpuUsage(),
			},
			Throttling: &cg1.Throttle{
				Periods:          t.GetPeriods(),
				ThrottledPeriods: t.GetThrottledPeriods(),
				ThrottledTime:    t.GetThrottledTime(),
			},
		}
	}
	if p := cs.GetPidsStats(); p != nil {
		m.Pids = &cg1.PidsStat{Current: p.GetCurrent(), Limit: p.GetLimit()}
	}
	if ms := cs.GetMemoryStats(); ms != nil {
		m.Memory = memoryMetrics(ms)
		// CRI asks the metrics, when a container exits with 137,
		// whether it was OOM-killed (as runc-v2 reports it).
		if n, ok := ms.GetStats()[pb.OOMKillStat]; ok {
			m.MemoryOomControl = &cg1.MemoryOomControl{OomKill: n}
		}
	}
	if b := cs.GetBlkioStats(); b != nil {
		m.Blkio = &cg1.BlkIOStat{
			IoServiceBytesRecursive: blkioEntries(b.GetIoServiceBytesRecursive()),
			IoServicedRecursive:     blkioEntries(b.GetIoServicedRecursive()),
			IoQueuedRecursive:       blkioEntries(b.GetIoQueuedRecursive()),
			IoServiceTimeRecursive:  blkioEntries(b.GetIoServiceTimeRecursive()),
			IoWaitTimeRecursive:     blkioEntries(b.GetIoWaitTimeRecursive()),
			IoMergedRecursive:       blkioEntries(b.GetIoMergedRecursive()),
			IoTimeRecursive:         blkioEntries(b.GetIoTimeRecursive()),
			SectorsRecursive:        blkioEntries(b.GetSectorsRecursive()),
		}
	}
	sizes := make([]string, 0, len(cs.GetHugetlbStats()))
	for size := range cs.GetHugetlbStats() {
		sizes = append(sizes, size)
	}
	sort.Strings(sizes)
	for _, size := range sizes {
		h := cs.GetHugetlbStats()[size]
		m.Hugetlb = append(m.Hugetlb, &cg1.HugetlbStat{Pagesize: size, Usage: h.GetUsage(), Max: h.GetMaxUsage(), Failcnt: h.GetFailcnt()})
	}
	return m
}

// memoryMetrics maps memory statistics. For each field: the cgroup v1
// key, then the cgroup v2 key that means the same (v2's memory.stat is
// hierarchical, so it also stands for v1's total_* keys).
func memoryMetrics(ms *pb.MemoryStats) *cg1.MemoryStat {
	st := ms.GetStats()
	get := func(keys ...string) uint64 {
		for _, k := range keys {
			if v, ok := st[k]; ok {
				return v
			}
		}
		return 0
	}
	// local is the v1 key k (else v2's), total is v1's total_k (else the
	// same as local).
	local := func(k, v2 string) uint64 { return get(k, v2) }
	total := func(k, v2 string) uint64 { return get("total_"+k, k, v2) }
	out := &cg1.MemoryStat{
		Cache:                   ms.GetCache(),
		RSS:                     local("rss", "anon"),
		RSSHuge:                 local("rss_huge", "anon_thp"),
		MappedFile:              local("mapped_file", "file_mapped"),
		Dirty:                   local("dirty", "file_dirty"),
		Writeback:               local("writeback", "file_writeback"),
		PgPgIn:                  local("pgpgin", "pgpgin"),
		PgPgOut:                 local("pgpgout", "pgpgout"),
		PgFault:                 local("pgfault", "pgfault"),
		PgMajFault:              local("pgmajfault", "pgmajfault"),
		InactiveAnon:            local("inactive_anon", "inactive_anon"),
		ActiveAnon:              local("active_anon", "active_anon"),
		InactiveFile:            local("inactive_file", "inactive_file"),
		ActiveFile:              local("active_file", "active_file"),
		Unevictable:             local("unevictable", "unevictable"),
		HierarchicalMemoryLimit: get("hierarchical_memory_limit"),
		HierarchicalSwapLimit:   get("hierarchical_memsw_limit"),
		TotalCache:              get("total_cache", "file"),
		TotalRSS:                total("rss", "anon"),
		TotalRSSHuge:            total("rss_huge", "anon_thp"),
		TotalMappedFile:         total("mapped_file", "file_mapped"),
		TotalDirty:              total("dirty", "file_dirty"),
		TotalWriteback:          total("writeback", "file_writeback"),
		TotalPgPgIn:             total("pgpgin", "pgpgin"),
		TotalPgPgOut:            total("pgpgout", "pgpgout"),
		TotalPgFault:            total("pgfault", "pgfault"),
		TotalPgMajFault:         total("pgmajfault", "pgmajfault"),
		TotalInactiveAnon:       total("inactive_anon", "inactive_anon"),
		TotalActiveAnon:         total("active_anon", "active_anon"),
		TotalInactiveFile:       total("inactive_file", "inactive_file"),
		TotalActiveFile:         total("active_file", "active_file"),
		TotalUnevictable:        total("unevictable", "unevictable"),
		Usage:                   memoryEntry(ms.GetUsage()),
		Swap:                    memoryEntry(ms.GetSwapUsage()),
		Kernel:                  memoryEntry(ms.GetKernelUsage()),
	}
	if out.TotalCache == 0 {
		out.TotalCache = out.Cache
	}
	return out
}

func memoryEntry(d *pb.MemoryData) *cg1.MemoryEntry {
	if d == nil {
		return nil
	}
	return &cg1.MemoryEntry{Usage: d.GetUsage(), Max: d.GetMaxUsage(), Failcnt: d.GetFailcnt(), Limit: d.GetLimit()}
}

func blkioEntries(es []*pb.BlkioStatsEntry) []*cg1.BlkIOEntry {
	var out []*cg1.BlkIOEntry
	for _, e := range es {
		out = append(out, &cg1.BlkIOEntry{Major: e.GetMajor(), Minor: e.GetMinor(), Op: e.GetOp(), Value: e.GetValue()})
	}
	return out
}
