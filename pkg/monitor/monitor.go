// Package monitor exports the metrics of every running sandbox on the
// host in Prometheus' format: the guest's (the agent's GetMetrics and
// each container's cgroup statistics), and the host processes' that run
// the sandbox (its hypervisor and its owner). A Collector gathers them on
// each scrape, each sandbox under its own timeout, so a hung guest only
// makes its own series missing (and vc_scrape_error says so).
package monitor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/virtcontainers/vc/pkg/vc"
)

// Sandbox is a running sandbox found on the host.
type Sandbox struct {
	// ID is the sandbox's label: its id, or for vc-runtime's sandboxes
	// (all recorded as "vm") the directory of their state root.
	ID string
	// Root is the pkg/vc state root holding it, and RecordedID its id
	// there.
	Root, RecordedID string
	// PodName and PodNamespace are a CRI pod's, from its annotations.
	PodName, PodNamespace string
	// VMPid and OwnerPid are the host processes running it.
	VMPid, OwnerPid int
}

// Guest is what a sandbox's guest reports.
type Guest struct {
	// Metrics is the agent's GetMetrics answer, in Prometheus' text
	// format.
	Metrics string
	// Containers are the running containers' statistics, by id.
	Containers map[string]*vc.ContainerStats
}

// Proc is a host process's usage.
type Proc struct {
	CPUSeconds           float64
	RSSBytes, PSSBytes   uint64
	Threads, OpenFDs     int
	HavePSS, HaveOpenFDs bool
}

// Source finds sandboxes and reads their figures.
type Source interface {
	// Sandboxes lists the running sandboxes.
	Sandboxes(ctx context.Context) ([]Sandbox, error)
	// Guest asks the sandbox's guest; it must give up when ctx ends.
	Guest(ctx context.Context, sb Sandbox) (Guest, error)
	// Proc reads a host process's usage.
	Proc(pid int) (Proc, error)
}

// Collector is a prometheus.Collector gathering from a Source on each
// scrape.
type Collector struct {
	src     Source
	timeout time.Duration
	errs    *prometheus.CounterVec
}

// NewCollector returns a Collector giving each sandbox's guest timeout
// to answer.
func NewCollector(src Source, timeout time.Duration) *Collector {
	return &Collector{src: src, timeout: timeout, errs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vc_monitor_scrape_errors_total", Help: "Failed scrapes of a sandbox's guest, by sandbox (a sandbox that goes away keeps its count).",
	}, []string{"sandbox_id"})}
}

var sandboxLabels = []string{"sandbox_id", "pod_name", "pod_namespace"}

func desc(name, help string, extra ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, append(append([]string{}, sandboxLabels...), extra...), nil)
}

var (
	descInfo      = desc("vc_sandbox_info", "A running sandbox; its labels name it.", "state_root")
	descScrapeErr = desc("vc_scrape_error", "1 when the sandbox's guest did not answer this scrape in time or failed (its guest series are then missing).")
	descScrapeDur = desc("vc_scrape_duration_seconds", "How long the sandbox's guest took to answer this scrape.")

	descProcCPU     = desc("vc_process_cpu_seconds_total", "CPU time of a host process of the sandbox (process: hypervisor or owner).", "process")
	descProcRSS     = desc("vc_process_resident_memory_bytes", "Resident memory of a host process of the sandbox.", "process")
	descProcPSS     = desc("vc_process_proportional_memory_bytes", "Proportional set size (PSS) of a host process of the sandbox.", "process")
	descProcThreads = desc("vc_process_threads", "Threads of a host process of the sandbox.", "process")
	descProcFDs     = desc("vc_process_open_fds", "Open file descriptors of a host process of the sandbox.", "process")

	descCtrCPU      = desc("vc_container_cpu_seconds_total", "CPU time of a container's cgroup in the guest.", "container_id")
	descCtrMem      = desc("vc_container_memory_usage_bytes", "Memory usage of a container's cgroup in the guest.", "container_id")
	descCtrMemLimit = desc("vc_container_memory_limit_bytes", "Memory limit of a container's cgroup in the guest (0: none).", "container_id")
	descCtrPids     = desc("vc_container_pids", "Processes in a container's cgroup in the guest.", "container_id")
	descCtrRx       = desc("vc_container_network_receive_bytes_total", "Bytes received on an interface of the container's sandbox.", "container_id", "interface")
	descCtrTx       = desc("vc_container_network_transmit_bytes_total", "Bytes sent on an interface of the container's sandbox.", "container_id", "interface")
	descCtrBlk      = desc("vc_container_blkio_bytes_total", "Bytes of block I/O of a container, by device and operation.", "container_id", "device", "op")
)

// Describe sends nothing: the guest's metrics are only known once read,
// so the Collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect gathers every running sandbox's metrics, each sandbox in
// parallel and under its own timeout.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	sbs, err := c.src.Sandboxes(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewDesc("vc_monitor_error", "Listing sandboxes failed.", nil, nil), err)
		return
	}
	out := make([][]prometheus.Metric, len(sbs))
	var wg sync.WaitGroup
	for i, sb := range sbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = c.sandbox(ctx, sb)
		}()
	}
	wg.Wait()
	for _, ms := range out {
		for _, m := range ms {
			ch <- m
		}
	}
	c.errs.Collect(ch)
}

// sandbox gathers one sandbox's metrics. The guest is asked in a
// goroutine of its own and abandoned when it does not answer in time, so
// even a Source ignoring ctx cannot hold up the scrape.
func (c *Collector) sandbox(ctx context.Context, sb Sandbox) []prometheus.Metric {
	lv := []string{sb.ID, sb.PodName, sb.PodNamespace}
	with := func(extra ...string) []string { return append(append([]string{}, lv...), extra...) }
	ms := []prometheus.Metric{prometheus.MustNewConstMetric(descInfo, prometheus.GaugeValue, 1, with(sb.Root)...)}

	for _, p := range []struct {
		name string
		pid  int
	}{{"hypervisor", sb.VMPid}, {"owner", sb.OwnerPid}} {
		if p.pid <= 0 {
			continue
		}
		st, err := c.src.Proc(p.pid)
		if err != nil {
			continue // gone meanwhile
		}
		l := with(p.name)
		ms = append(ms,
			prometheus.MustNewConstMetric(descProcCPU, prometheus.CounterValue, st.CPUSeconds, l...),
			prometheus.MustNewConstMetric(descProcRSS, prometheus.GaugeValue, float64(st.RSSBytes), l...),
			prometheus.MustNewConstMetric(descProcThreads, prometheus.GaugeValue, float64(st.Threads), l...))
		if st.HavePSS {
			ms = append(ms, prometheus.MustNewConstMetric(descProcPSS, prometheus.GaugeValue, float64(st.PSSBytes), l...))
		}
		if st.HaveOpenFDs {
			ms = append(ms, prometheus.MustNewConstMetric(descProcFDs, prometheus.GaugeValue, float64(st.OpenFDs), l...))
		}
	}

	gctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	type answer struct {
		g   Guest
		err error
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		g, err := c.src.Guest(gctx, sb)
		done <- answer{g, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-gctx.Done():
		a.err = fmt.Errorf("sandbox %s: guest did not answer within %s", sb.ID, c.timeout)
	}
	ms = append(ms, prometheus.MustNewConstMetric(descScrapeDur, prometheus.GaugeValue, time.Since(start).Seconds(), lv...))
	if a.err != nil {
		c.errs.WithLabelValues(sb.ID).Inc()
		return append(ms, prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 1, lv...))
	}
	ms = append(ms, prometheus.MustNewConstMetric(descScrapeErr, prometheus.GaugeValue, 0, lv...))
	ms = append(ms, guestMetrics(a.g.Metrics, lv)...)
	ids := make([]string, 0, len(a.g.Containers))
	for id := range a.g.Containers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ms = append(ms, containerMetrics(a.g.Containers[id], with(id))...)
	}
	return ms
}

func containerMetrics(st *vc.ContainerStats, l []string) []prometheus.Metric {
	var ms []prometheus.Metric
	with := func(extra ...string) []string { return append(append([]string{}, l...), extra...) }
	if st.CPU != nil {
		ms = append(ms, prometheus.MustNewConstMetric(descCtrCPU, prometheus.CounterValue, float64(st.CPU.TotalNs)/1e9, l...))
	}
	if st.Memory != nil {
		ms = append(ms,
			prometheus.MustNewConstMetric(descCtrMem, prometheus.GaugeValue, float64(st.Memory.Usage.Usage), l...),
			prometheus.MustNewConstMetric(descCtrMemLimit, prometheus.GaugeValue, memLimit(st.Memory.Usage.Limit), l...))
	}
	if st.Pids != nil {
		ms = append(ms, prometheus.MustNewConstMetric(descCtrPids, prometheus.GaugeValue, float64(st.Pids.Current), l...))
	}
	for _, n := range st.Network {
		ms = append(ms,
			prometheus.MustNewConstMetric(descCtrRx, prometheus.CounterValue, float64(n.RxBytes), with(n.Name)...),
			prometheus.MustNewConstMetric(descCtrTx, prometheus.CounterValue, float64(n.TxBytes), with(n.Name)...))
	}
	if st.Blkio != nil {
		seen := map[[2]string]bool{}
		for _, e := range st.Blkio.ServiceBytes {
			k := [2]string{fmt.Sprintf("%d:%d", e.Major, e.Minor), strings.ToLower(e.Op)}
			if seen[k] {
				continue // a duplicate entry would make the scrape fail
			}
			seen[k] = true
			ms = append(ms, prometheus.MustNewConstMetric(descCtrBlk, prometheus.CounterValue, float64(e.Value), with(k[0], k[1])...))
		}
	}
	return ms
}

// memLimit is a cgroup limit, 0 for none (cgroup v1 reports "none" as a
// huge number).
func memLimit(v uint64) float64 {
	if v >= 1<<62 {
		return 0
	}
	return float64(v)
}

// guestMetrics turns the agent's text-format metrics into const metrics
// carrying the sandbox's labels. Families whose names do not start with
// vc_ are prefixed vc_guest_, so nothing a guest sends can pose as
// another exporter's series; a malformed answer gives what parsed.
func guestMetrics(text string, lv []string) []prometheus.Metric {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, _ := p.TextToMetricFamilies(strings.NewReader(text))
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	var ms []prometheus.Metric
	for _, n := range names {
		f := fams[n]
		var vt prometheus.ValueType
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			vt = prometheus.CounterValue
		case dto.MetricType_GAUGE:
			vt = prometheus.GaugeValue
		case dto.MetricType_UNTYPED:
			vt = prometheus.UntypedValue
		default:
			continue // the agent sends no summaries or histograms
		}
		name := n
		if !strings.HasPrefix(name, "vc_") {
			name = "vc_guest_" + name
		}
		for _, m := range f.GetMetric() {
			names, values := append([]string{}, sandboxLabels...), append([]string{}, lv...)
			for _, lp := range m.GetLabel() {
				if isSandboxLabel(lp.GetName()) {
					continue // ours win
				}
				names, values = append(names, lp.GetName()), append(values, lp.GetValue())
			}
			var v float64
			switch vt {
			case prometheus.CounterValue:
				v = m.GetCounter().GetValue()
			case prometheus.GaugeValue:
				v = m.GetGauge().GetValue()
			default:
				v = m.GetUntyped().GetValue()
			}
			cm, err := prometheus.NewConstMetric(prometheus.NewDesc(name, f.GetHelp(), names, nil), vt, v, values...)
			if err != nil {
				continue
			}
			ms = append(ms, cm)
		}
	}
	return ms
}

func isSandboxLabel(n string) bool {
	for _, l := range sandboxLabels {
		if l == n {
			return true
		}
	}
	return false
}
