package monitor

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/virtcontainers/vc/pkg/vc"
)

// fake is a Source: sandboxes "a" and "b"; a guest listed in hang never
// answers (it ignores ctx, the worst case), one in fail errs.
type fake struct {
	mu   sync.Mutex
	sbs  []Sandbox
	hang map[string]bool
	fail map[string]bool
}

func (f *fake) Sandboxes(context.Context) ([]Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Sandbox{}, f.sbs...), nil
}

func (f *fake) Guest(ctx context.Context, sb Sandbox) (Guest, error) {
	f.mu.Lock()
	hang, fail := f.hang[sb.ID], f.fail[sb.ID]
	f.mu.Unlock()
	if hang {
		select {} // never answers, whatever ctx says
	}
	if fail {
		return Guest{}, errors.New("agent gone")
	}
	return Guest{
		Metrics: "# HELP vc_guest_load_average Load.\n# TYPE vc_guest_load_average gauge\nvc_guest_load_average{period=\"1m\",sandbox_id=\"spoof\"} 0.5\n" +
			"# TYPE foreign_total counter\nforeign_total 3\n",
		Containers: map[string]*vc.ContainerStats{"c-" + sb.ID: {
			CPU:     &vc.CPUStats{TotalNs: 2_500_000_000},
			Memory:  &vc.MemoryStats{Usage: vc.MemoryData{Usage: 1 << 20, Limit: 1 << 63}},
			Pids:    &vc.PidsStats{Current: 4},
			Network: []vc.NetworkStats{{Name: "eth0", RxBytes: 10, TxBytes: 20}},
			Blkio:   &vc.BlkioStats{ServiceBytes: []vc.BlkioEntry{{Major: 254, Minor: 0, Op: "Read", Value: 4096}, {Major: 254, Minor: 0, Op: "Read", Value: 1}}},
		}},
	}, nil
}

func (f *fake) Proc(pid int) (Proc, error) {
	if pid == 999 {
		return Proc{}, errors.New("gone")
	}
	return Proc{CPUSeconds: 1.5, RSSBytes: 100, Threads: 3, OpenFDs: 7, HaveOpenFDs: true}, nil
}

func scrape(t *testing.T, c *Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	var b strings.Builder
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			b.WriteString(f.GetName())
			for _, l := range m.GetLabel() {
				b.WriteString(" " + l.GetName() + "=" + l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
			b.WriteString(" " + strconv.FormatFloat(v, 'g', -1, 64) + "\n")
		}
	}
	return b.String()
}

func TestCollector(t *testing.T) {
	f := &fake{
		sbs: []Sandbox{
			{ID: "a", Root: "/r", VMPid: 10, OwnerPid: 11, PodName: "web", PodNamespace: "default"},
			{ID: "b", Root: "/r", VMPid: 20, OwnerPid: 999},
		},
		hang: map[string]bool{}, fail: map[string]bool{},
	}
	c := NewCollector(f, 300*time.Millisecond)
	out := scrape(t, c)
	for _, want := range []string{
		"vc_sandbox_info pod_name=web pod_namespace=default sandbox_id=a state_root=/r 1",
		"vc_scrape_error pod_name= pod_namespace= sandbox_id=b 0",
		"vc_process_cpu_seconds_total pod_name=web pod_namespace=default process=hypervisor sandbox_id=a 1.5",
		"vc_process_open_fds pod_name= pod_namespace= process=hypervisor sandbox_id=b 7",
		"vc_container_cpu_seconds_total container_id=c-a pod_name=web pod_namespace=default sandbox_id=a 2.5",
		"vc_container_memory_limit_bytes container_id=c-b pod_name= pod_namespace= sandbox_id=b 0",
		"vc_container_pids container_id=c-a pod_name=web pod_namespace=default sandbox_id=a 4",
		"vc_container_network_receive_bytes_total container_id=c-a interface=eth0 pod_name=web pod_namespace=default sandbox_id=a 10",
		"vc_container_blkio_bytes_total container_id=c-a device=254:0 op=read pod_name=web pod_namespace=default sandbox_id=a 4096",
		"vc_guest_load_average period=1m pod_name=web pod_namespace=default sandbox_id=a 0.5",
		"vc_guest_foreign_total pod_name= pod_namespace= sandbox_id=b 3",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, bad := range []string{"sandbox_id=spoof", "process=owner pod_name= pod_namespace= sandbox_id=b", "\nforeign_total"} {
		if strings.Contains(out, bad) {
			t.Errorf("unexpected %q in:\n%s", bad, out)
		}
	}

	// A hung guest: the scrape answers within about the timeout, with
	// the other sandbox's series and vc_scrape_error 1 for the hung one.
	f.mu.Lock()
	f.hang["a"], f.fail["b"] = true, false
	f.mu.Unlock()
	start := time.Now()
	out = scrape(t, c)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("scrape took %s with a hung guest (timeout 300ms)", d)
	}
	for _, want := range []string{
		"vc_scrape_error pod_name=web pod_namespace=default sandbox_id=a 1",
		"vc_scrape_error pod_name= pod_namespace= sandbox_id=b 0",
		"vc_container_pids container_id=c-b pod_name= pod_namespace= sandbox_id=b 4",
		"vc_process_threads pod_name=web pod_namespace=default process=hypervisor sandbox_id=a 3",
		"vc_monitor_scrape_errors_total sandbox_id=a 1",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "container_id=c-a") {
		t.Errorf("hung sandbox's container series present:\n%s", out)
	}

	// A failing guest, and a sandbox that stopped: its series vanish.
	f.mu.Lock()
	f.hang["a"], f.fail["b"] = false, true
	f.sbs = f.sbs[1:]
	f.mu.Unlock()
	out = scrape(t, c)
	if strings.Contains(out, "sandbox_id=a ") && !strings.Contains(out, "vc_monitor_scrape_errors_total sandbox_id=a 1") {
		t.Errorf("stopped sandbox a still has series:\n%s", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "sandbox_id=a") && !strings.HasPrefix(l, "vc_monitor_scrape_errors_total") {
			t.Errorf("stopped sandbox a: %s", l)
		}
	}
	if !strings.Contains(out, "vc_scrape_error pod_name= pod_namespace= sandbox_id=b 1\n") {
		t.Errorf("failing guest b not flagged:\n%s", out)
	}
	probs, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range probs {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
