package shim

import (
	"sort"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/virtcontainers/vc/pkg/vc"
)

// toMetrics turns the agent's container statistics into the cgroup v1
// metrics containerd and its CRI plugin decode from a task's Stats (what
// runc-v2 returns on a cgroup v1 host). The guest may run cgroup v1 or v2:
// the agent passes libcontainer's memory.stat keys through, which differ,
// so each field takes the v1 key or its v2 counterpart. A nil response
// gives empty metrics.
func toMetrics(r *vc.ContainerStats) *cg1.Metrics {
	m := &cg1.Metrics{}
	if r == nil {
		return m
	}
	for _, n := range r.Network {
		m.Network = append(m.Network, &cg1.NetworkStat{
			Name:    n.Name,
			RxBytes: n.RxBytes, RxPackets: n.RxPackets, RxErrors: n.RxErrors, RxDropped: n.RxDropped,
			TxBytes: n.TxBytes, TxPackets: n.TxPackets, TxErrors: n.TxErrors, TxDropped: n.TxDropped,
		})
	}
	if c := r.CPU; c != nil {
		m.CPU = &cg1.CPUStat{
			Usage: &cg1.CPUUsage{Total: c.TotalNs, Kernel: c.KernelNs, User: c.UserNs, PerCPU: c.PerCPUNs},
			Throttling: &cg1.Throttle{
				Periods:          c.Periods,
				ThrottledPeriods: c.ThrottledPeriods,
				ThrottledTime:    c.ThrottledNs,
			},
		}
	}
	if p := r.Pids; p != nil {
		m.Pids = &cg1.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	if ms := r.Memory; ms != nil {
		m.Memory = memoryMetrics(ms)
		// CRI asks the metrics, when a container exits with 137,
		// whether it was OOM-killed (as runc-v2 reports it).
		if n, ok := ms.Stats[vc.OOMKillStat]; ok {
			m.MemoryOomControl = &cg1.MemoryOomControl{OomKill: n}
		}
	}
	if b := r.Blkio; b != nil {
		m.Blkio = &cg1.BlkIOStat{
			IoServiceBytesRecursive: blkioEntries(b.ServiceBytes),
			IoServicedRecursive:     blkioEntries(b.Serviced),
			IoQueuedRecursive:       blkioEntries(b.Queued),
			IoServiceTimeRecursive:  blkioEntries(b.ServiceTime),
			IoWaitTimeRecursive:     blkioEntries(b.WaitTime),
			IoMergedRecursive:       blkioEntries(b.Merged),
			IoTimeRecursive:         blkioEntries(b.Time),
			SectorsRecursive:        blkioEntries(b.Sectors),
		}
	}
	sizes := make([]string, 0, len(r.Hugetlb))
	for size := range r.Hugetlb {
		sizes = append(sizes, size)
	}
	sort.Strings(sizes)
	for _, size := range sizes {
		h := r.Hugetlb[size]
		m.Hugetlb = append(m.Hugetlb, &cg1.HugetlbStat{Pagesize: size, Usage: h.Usage, Max: h.MaxUsage, Failcnt: h.Failcnt})
	}
	return m
}

// memoryMetrics maps memory statistics. For each field: the cgroup v1
// key, then the cgroup v2 key that means the same (v2's memory.stat is
// hierarchical, so it also stands for v1's total_* keys).
func memoryMetrics(ms *vc.MemoryStats) *cg1.MemoryStat {
	st := ms.Stats
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
		Cache:                   ms.Cache,
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
		Usage:                   memoryEntry(ms.Usage),
		Swap:                    memoryEntry(ms.Swap),
		Kernel:                  memoryEntry(ms.Kernel),
	}
	if out.TotalCache == 0 {
		out.TotalCache = out.Cache
	}
	return out
}

func memoryEntry(d vc.MemoryData) *cg1.MemoryEntry {
	return &cg1.MemoryEntry{Usage: d.Usage, Max: d.MaxUsage, Failcnt: d.Failcnt, Limit: d.Limit}
}

func blkioEntries(es []vc.BlkioEntry) []*cg1.BlkIOEntry {
	var out []*cg1.BlkIOEntry
	for _, e := range es {
		out = append(out, &cg1.BlkIOEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	return out
}

// memoryStat is one memory.stat key of st, if the guest reported it.
func memoryStat(st *vc.ContainerStats, key string) (uint64, bool) {
	if st == nil || st.Memory == nil {
		return 0, false
	}
	n, ok := st.Memory.Stats[key]
	return n, ok
}
