package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("events", command{
		usage: "--stats ID",
		short: "display the container's statistics (--stats: once, as runc's JSON)",
		run:   eventsCmd,
	})
}

// event is runc's events output.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// Statistics as runc's events package names them.
type (
	stats struct {
		CPU     cpu           `json:"cpu"`
		Memory  memory        `json:"memory"`
		Pids    pids          `json:"pids"`
		Blkio   blkio         `json:"blkio"`
		Hugetlb map[string]hp `json:"hugetlb,omitempty"`
		Network []netIface    `json:"network_interfaces,omitempty"`
	}
	cpu struct {
		Usage      cpuUsage   `json:"usage"`
		Throttling throttling `json:"throttling"`
	}
	cpuUsage struct {
		Total  uint64   `json:"total,omitempty"`
		Percpu []uint64 `json:"percpu,omitempty"`
		Kernel uint64   `json:"kernel"`
		User   uint64   `json:"user"`
	}
	throttling struct {
		Periods          uint64 `json:"periods,omitempty"`
		ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
		ThrottledTime    uint64 `json:"throttledTime,omitempty"`
	}
	memEntry struct {
		Limit   uint64 `json:"limit"`
		Usage   uint64 `json:"usage,omitempty"`
		Max     uint64 `json:"max,omitempty"`
		Failcnt uint64 `json:"failcnt"`
	}
	memory struct {
		Cache     uint64            `json:"cache,omitempty"`
		Usage     memEntry          `json:"usage,omitempty"`
		Swap      memEntry          `json:"swap,omitempty"`
		Kernel    memEntry          `json:"kernel,omitempty"`
		Raw       map[string]uint64 `json:"raw,omitempty"`
		Hierarchy bool              `json:"use_hierarchy,omitempty"`
	}
	pids struct {
		Current uint64 `json:"current,omitempty"`
		Limit   uint64 `json:"limit,omitempty"`
	}
	blkioEntry struct {
		Major uint64 `json:"major,omitempty"`
		Minor uint64 `json:"minor,omitempty"`
		Op    string `json:"op,omitempty"`
		Value uint64 `json:"value,omitempty"`
	}
	blkio struct {
		IoServiceBytesRecursive []blkioEntry `json:"ioServiceBytesRecursive,omitempty"`
		IoServicedRecursive     []blkioEntry `json:"ioServicedRecursive,omitempty"`
		IoQueuedRecursive       []blkioEntry `json:"ioQueueRecursive,omitempty"`
		IoServiceTimeRecursive  []blkioEntry `json:"ioServiceTimeRecursive,omitempty"`
		IoWaitTimeRecursive     []blkioEntry `json:"ioWaitTimeRecursive,omitempty"`
		IoMergedRecursive       []blkioEntry `json:"ioMergedRecursive,omitempty"`
		IoTimeRecursive         []blkioEntry `json:"ioTimeRecursive,omitempty"`
		SectorsRecursive        []blkioEntry `json:"sectorsRecursive,omitempty"`
	}
	hp struct {
		Usage   uint64 `json:"usage,omitempty"`
		Max     uint64 `json:"max,omitempty"`
		Failcnt uint64 `json:"failcnt"`
	}
	netIface struct {
		Name      string `json:"name"`
		RxBytes   uint64 `json:"rx_bytes"`
		RxPackets uint64 `json:"rx_packets"`
		RxErrors  uint64 `json:"rx_errors"`
		RxDropped uint64 `json:"rx_dropped"`
		TxBytes   uint64 `json:"tx_bytes"`
		TxPackets uint64 `json:"tx_packets"`
		TxErrors  uint64 `json:"tx_errors"`
		TxDropped uint64 `json:"tx_dropped"`
	}
)

func eventsCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("events")
	once := fs.Bool("stats", false, "display the container's stats then exit")
	var interval time.Duration
	fs.DurationVar(&interval, "interval", 5*time.Second, "set the stats collection interval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "events")
	if err != nil {
		return err
	}
	if !*once {
		return errors.New("events: only --stats is supported (no event stream yet)")
	}
	c, closeFn, err := liveContainer(ctx, g, id)
	if err != nil {
		return err
	}
	defer closeFn()
	s, err := c.Stats(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(event{Type: "stats", ID: id, Data: convertStats(s)})
}

// convertStats renders the library's statistics as runc's.
func convertStats(s *vc.ContainerStats) *stats {
	var out stats
	if c := s.CPU; c != nil {
		out.CPU = cpu{
			Usage:      cpuUsage{Total: c.TotalNs, Percpu: c.PerCPUNs, Kernel: c.KernelNs, User: c.UserNs},
			Throttling: throttling{Periods: c.Periods, ThrottledPeriods: c.ThrottledPeriods, ThrottledTime: c.ThrottledNs},
		}
	}
	if m := s.Memory; m != nil {
		entry := func(d vc.MemoryData) memEntry {
			return memEntry{Limit: d.Limit, Usage: d.Usage, Max: d.MaxUsage, Failcnt: d.Failcnt}
		}
		out.Memory = memory{Cache: m.Cache, Usage: entry(m.Usage), Swap: entry(m.Swap), Kernel: entry(m.Kernel), Raw: m.Stats, Hierarchy: m.UseHierarchy}
	}
	if p := s.Pids; p != nil {
		out.Pids = pids{Current: p.Current, Limit: p.Limit}
	}
	if b := s.Blkio; b != nil {
		conv := func(es []vc.BlkioEntry) []blkioEntry {
			var r []blkioEntry
			for _, e := range es {
				r = append(r, blkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
			}
			return r
		}
		out.Blkio = blkio{
			IoServiceBytesRecursive: conv(b.ServiceBytes), IoServicedRecursive: conv(b.Serviced),
			IoQueuedRecursive: conv(b.Queued), IoServiceTimeRecursive: conv(b.ServiceTime),
			IoWaitTimeRecursive: conv(b.WaitTime), IoMergedRecursive: conv(b.Merged),
			IoTimeRecursive: conv(b.Time), SectorsRecursive: conv(b.Sectors),
		}
	}
	if len(s.Hugetlb) > 0 {
		out.Hugetlb = map[string]hp{}
		for k, h := range s.Hugetlb {
			out.Hugetlb[k] = hp{Usage: h.Usage, Max: h.MaxUsage, Failcnt: h.Failcnt}
		}
	}
	for _, n := range s.Network {
		out.Network = append(out.Network, netIface{Name: n.Name, RxBytes: n.RxBytes, RxPackets: n.RxPackets, RxErrors: n.RxErrors,
			RxDropped: n.RxDropped, TxBytes: n.TxBytes, TxPackets: n.TxPackets, TxErrors: n.TxErrors, TxDropped: n.TxDropped})
	}
	return &out
}
