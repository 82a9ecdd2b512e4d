package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

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
	ids := fs.Args()
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
		var b strings.Builder
		w := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
		fmt.Fprintln(w, "CONTAINER ID\tCPU %\tCPU TIME\tMEM USAGE / LIMIT\tPIDS\tNET RX / TX")
		for _, id := range ids {
			st, err := containerStats(ctx, g, id)
			if err != nil {
				if named {
					return err
				}
				continue // stopped meanwhile
			}
			now := statSample{at: time.Now(), cpuNs: st.cpuNs}
			pct := "--"
			if p, ok := prev[id]; ok && now.at.After(p.at) {
				pct = fmt.Sprintf("%.2f%%", 100*float64(now.cpuNs-p.cpuNs)/float64(now.at.Sub(p.at).Nanoseconds()))
			}
			prev[id] = now
			fmt.Fprintf(w, "%s\t%s\t%.2fs\t%s / %s\t%d\t%s / %s\n", id, pct,
				float64(st.cpuNs)/1e9, human(st.mem.Usage), human(st.mem.Limit), st.pids, human(st.rx), human(st.tx))
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

type statLine struct {
	cpuNs, pids, rx, tx uint64
	mem                 vc.MemoryData
}

// containerStats reads one container's figures from its guest.
func containerStats(ctx context.Context, g *globals, id string) (statLine, error) {
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return statLine{}, err
	}
	st, err := s.Container(id).Stats(ctx)
	s.Close()
	if err != nil {
		return statLine{}, err
	}
	var l statLine
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
