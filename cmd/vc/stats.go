package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("stats", command{usage: "[--no-stream] [CONTAINER...]", short: "print containers' resource usage (all running ones when none is named), every second until interrupted", run: statsCmd})
}

func statsCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("stats", commands["stats"].usage)
	once := fs.Bool("no-stream", false, "print once and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ids, err := resolveContainers(ctx, g, fs.Args())
	if err != nil {
		return err
	}
	named := len(ids) > 0
	prev := map[string]statSample{}
	clear := !*once && isTerminal(os.Stdout)
	for {
		if !named {
			ids = ids[:0]
			list, err := vc.ListSandbox(ctx, g.stateRoot)
			if err != nil {
				return err
			}
			for _, sb := range list {
				if sb.State == vc.StateRunning {
					ids = append(ids, sb.ID)
				}
			}
		}
		// CPU % is the CPU time used between two samples: a container
		// seen for the first time (every one, with --no-stream) is
		// sampled once more a second later, as docker's --no-stream
		// does, rather than shown without a figure.
		if primed := primeSamples(ctx, g, ids, prev); primed {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		var b strings.Builder
		w := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "CONTAINER ID\tNAME\tCPU %\tCPU TIME\tMEM USAGE / LIMIT\tMEM %\tPIDS\tNET RX / TX")
		for _, id := range ids {
			st, err := containerStats(ctx, g, id)
			if err != nil {
				if named {
					return err
				}
				continue // stopped meanwhile
			}
			pct := "--"
			if p, ok := prev[id]; ok {
				pct = cpuPercent(p, st.statSample)
			}
			prev[id] = st.statSample
			memPct := "--"
			if st.mem.Limit > 0 {
				memPct = fmt.Sprintf("%.2f%%", 100*float64(st.mem.Usage)/float64(st.mem.Limit))
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%.2fs\t%s / %s\t%s\t%d\t%s / %s\n", containerID(g, id)[:shortIDLen], id, pct,
				float64(st.cpuNs)/1e9, human(st.mem.Usage), human(st.mem.Limit), memPct, st.pids, human(st.rx), human(st.tx))
		}
		w.Flush()
		if clear {
			fmt.Print("\033[2J\033[H")
		}
		fmt.Print(b.String())
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// statSample is a container's CPU time at a moment, for its CPU %.
type statSample struct {
	at    time.Time
	cpuNs uint64
}

// cpuPercent is the share of one CPU the container used from sample p to
// sample n (above 100% on several).
func cpuPercent(p, n statSample) string {
	if !n.at.After(p.at) || n.cpuNs < p.cpuNs {
		return "--"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n.cpuNs-p.cpuNs)/float64(n.at.Sub(p.at).Nanoseconds()))
}

// memoryLimit is the memory a container may use: its cgroup's limit
// (none: 0 or "max", read as a huge number), or the VM's memory (vmMiB, 0
// for the default) when that is less.
func memoryLimit(cgroup uint64, vmMiB uint32) uint64 {
	if vmMiB == 0 {
		vmMiB = hypervisor.DefaultMemoryMiB
	}
	if vm := uint64(vmMiB) << 20; cgroup == 0 || cgroup > vm {
		return vm
	}
	return cgroup
}

// primeSamples takes a first sample of the containers of ids that prev has
// none of, and tells whether it took any.
func primeSamples(ctx context.Context, g *globals, ids []string, prev map[string]statSample) bool {
	primed := false
	for _, id := range ids {
		if _, ok := prev[id]; ok {
			continue
		}
		if st, err := containerStats(ctx, g, id); err == nil {
			prev[id], primed = st.statSample, true
		}
	}
	return primed
}

type statLine struct {
	statSample
	pids, rx, tx uint64
	mem          vc.MemoryData
}

// containerStats reads one container's figures from its guest. The
// memory limit is the container's cgroup's, or the VM's memory when that
// is less (a container without a limit has the VM's, not the host's).
func containerStats(ctx context.Context, g *globals, id string) (statLine, error) {
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return statLine{}, err
	}
	st, err := s.Container(id).Stats(ctx)
	at := time.Now()
	vmMiB := s.Status().Config.Hypervisor.MemoryMiB
	s.Close()
	if err != nil {
		return statLine{}, err
	}
	l := statLine{statSample: statSample{at: at}}
	for _, n := range st.Network {
		l.rx += n.RxBytes
		l.tx += n.TxBytes
	}
	if st.CPU != nil {
		l.cpuNs = st.CPU.TotalNs
	}
	if st.Memory != nil {
		l.mem = st.Memory.Usage
	}
	l.mem.Limit = memoryLimit(l.mem.Limit, vmMiB)
	if st.Pids != nil {
		l.pids = st.Pids.Current
	}
	return l, nil
}

func human(b uint64) string {
	switch {
	case b >= 1<<40:
		return "unlimited"
	case b >= 1<<30:
		return fmt.Sprintf("%.2fGiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2fMiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.2fKiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%dB", b)
}
