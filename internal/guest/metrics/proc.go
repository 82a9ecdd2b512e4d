package metrics

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Prefixes of the metric names.
const (
	AgentPrefix = "vc_agent_"
	GuestPrefix = "vc_guest_"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; Linux fixes
// it at 100 on every architecture the agent runs on.
const clockTicks = 100

// Process collects the figures of the process whose /proc directory is
// procPid (such as "/proc/self"): resident memory, CPU time, open file
// descriptors, threads; and the Go runtime's goroutines. Figures that
// cannot be read are left out; the error says which.
func Process(procPid string) ([]Family, error) {
	var fams []Family
	var errs []string
	if st, err := os.ReadFile(filepath.Join(procPid, "stat")); err == nil {
		f, err := parseStat(string(st))
		if err != nil {
			errs = append(errs, err.Error())
		} else {
			fams = append(fams,
				One(AgentPrefix+"process_cpu_seconds_total", "User and system CPU time the agent has used, in seconds.", Counter, f.cpu),
				One(AgentPrefix+"process_resident_memory_bytes", "Resident memory of the agent, in bytes.", Gauge, f.rss),
				One(AgentPrefix+"process_virtual_memory_bytes", "Virtual memory of the agent, in bytes.", Gauge, f.vsize),
				One(AgentPrefix+"process_threads", "Threads of the agent.", Gauge, f.threads),
			)
		}
	} else {
		errs = append(errs, err.Error())
	}
	if ents, err := os.ReadDir(filepath.Join(procPid, "fd")); err == nil {
		fams = append(fams, One(AgentPrefix+"process_open_fds", "Open file descriptors of the agent.", Gauge, float64(len(ents))))
	} else {
		errs = append(errs, err.Error())
	}
	fams = append(fams, One(AgentPrefix+"go_goroutines", "Goroutines of the agent.", Gauge, float64(runtime.NumGoroutine())))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fams = append(fams, One(AgentPrefix+"go_heap_alloc_bytes", "Bytes of allocated heap objects of the agent.", Gauge, float64(ms.HeapAlloc)))
	if len(errs) > 0 {
		return fams, fmt.Errorf("process metrics: %s", strings.Join(errs, "; "))
	}
	return fams, nil
}

type statFigures struct {
	cpu, rss, vsize, threads float64
}

// parseStat reads /proc/PID/stat (proc(5)); the command name may hold
// spaces and parentheses, so fields are counted after the last ')'.
func parseStat(s string) (statFigures, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return statFigures{}, fmt.Errorf("stat: no command name in %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): field N is f[N-3].
	if len(f) < 22 {
		return statFigures{}, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	num := func(n int) (float64, error) {
		v, err := strconv.ParseUint(f[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat field %d: %w", n, err)
		}
		return float64(v), nil
	}
	var out statFigures
	var vals [5]float64
	for i, n := range []int{14, 15, 20, 23, 24} {
		v, err := num(n)
		if err != nil {
			return statFigures{}, err
		}
		vals[i] = v
	}
	out.cpu = (vals[0] + vals[1]) / clockTicks
	out.threads = vals[2]
	out.vsize = vals[3]
	out.rss = vals[4] * float64(os.Getpagesize())
	return out, nil
}

// Guest collects the guest's memory and load figures from procRoot
// (normally "/proc").
func Guest(procRoot string) ([]Family, error) {
	var fams []Family
	var errs []string
	if mi, err := os.ReadFile(filepath.Join(procRoot, "meminfo")); err == nil {
		m := parseMeminfo(string(mi))
		for _, k := range []struct{ key, name, help string }{
			{"MemTotal", "memory_total_bytes", "Memory of the guest, in bytes (MemTotal)."},
			{"MemFree", "memory_free_bytes", "Unused memory of the guest, in bytes (MemFree)."},
			{"MemAvailable", "memory_available_bytes", "Memory available to new work in the guest, in bytes (MemAvailable)."},
			{"Cached", "memory_cached_bytes", "Page cache of the guest, in bytes (Cached)."},
			{"SwapTotal", "swap_total_bytes", "Swap space of the guest, in bytes (SwapTotal)."},
			{"SwapFree", "swap_free_bytes", "Unused swap space of the guest, in bytes (SwapFree)."},
		} {
			if v, ok := m[k.key]; ok {
				fams = append(fams, One(GuestPrefix+k.name, k.help, Gauge, v))
			}
		}
	} else {
		errs = append(errs, err.Error())
	}
	if la, err := os.ReadFile(filepath.Join(procRoot, "loadavg")); err == nil {
		f := strings.Fields(string(la))
		if len(f) >= 3 {
			fam := Family{Name: GuestPrefix + "load_average", Help: "Load average of the guest over 1, 5 and 15 minutes.", Type: Gauge}
			for i, p := range []string{"1m", "5m", "15m"} {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					fam.Samples = append(fam.Samples, Sample{Labels: []Label{{"period", p}}, Value: v})
				}
			}
			fams = append(fams, fam)
		} else {
			errs = append(errs, fmt.Sprintf("loadavg: %q", la))
		}
	} else {
		errs = append(errs, err.Error())
	}
	if up, err := os.ReadFile(filepath.Join(procRoot, "uptime")); err == nil {
		if f := strings.Fields(string(up)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				fams = append(fams, One(GuestPrefix+"uptime_seconds", "Time since the guest booted, in seconds.", Gauge, v))
			}
		}
	}
	if len(errs) > 0 {
		return fams, fmt.Errorf("guest metrics: %s", strings.Join(errs, "; "))
	}
	return fams, nil
}

// parseMeminfo reads /proc/meminfo into bytes by key.
func parseMeminfo(s string) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		m[k] = float64(v)
	}
	return m
}
