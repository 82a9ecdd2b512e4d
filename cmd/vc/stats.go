package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("stats", command{usage: "CONTAINER...", short: "print containers' resource usage", run: statsCmd})
}

func statsCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("stats", commands["stats"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: missing")
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "CONTAINER ID\tCPU TIME\tMEM USAGE / LIMIT\tPIDS\tNET RX / TX")
	for _, id := range fs.Args() {
		s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
		if err != nil {
			return err
		}
		st, err := s.Container(id).Stats(ctx)
		s.Close()
		if err != nil {
			return err
		}
		var rx, tx uint64
		for _, n := range st.Network {
			rx += n.RxBytes
			tx += n.TxBytes
		}
		var cpu, pids uint64
		var mem vc.MemoryData
		if st.CPU != nil {
			cpu = st.CPU.TotalNs
		}
		if st.Memory != nil {
			mem = st.Memory.Usage
		}
		if st.Pids != nil {
			pids = st.Pids.Current
		}
		fmt.Fprintf(w, "%s\t%.2fs\t%s / %s\t%d\t%s / %s\n", id,
			float64(cpu)/1e9, human(mem.Usage), human(mem.Limit), pids, human(rx), human(tx))
	}
	return w.Flush()
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
