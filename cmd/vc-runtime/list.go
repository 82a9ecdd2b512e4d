package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"
)

func init() {
	register("list", command{usage: "[--format table|json] [--quiet]", short: "list containers", run: listCmd})
}

func listCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("list")
	format := fs.String("format", "table", "select one of: table or json")
	fs.StringVar(format, "f", "table", "select one of: table or json")
	quiet := fs.Bool("quiet", false, "display only container IDs")
	fs.BoolVar(quiet, "q", false, "display only container IDs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%q requires exactly 0 argument(s)", "list")
	}
	states, err := listStates(g.root)
	if err != nil {
		return err
	}
	if *quiet {
		for _, s := range states {
			fmt.Fprintln(stdout, s.ID)
		}
		return nil
	}
	switch *format {
	case "json":
		if states == nil {
			states = []ociState{}
		}
		return json.NewEncoder(stdout).Encode(states)
	case "table":
		w := tabwriter.NewWriter(stdout, 12, 1, 3, ' ', 0)
		fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
		for _, s := range states {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
		}
		return w.Flush()
	}
	return fmt.Errorf("invalid format option")
}

// listStates is the state of every container under root, by id.
func listStates(root string) ([]ociState, error) {
	ents, err := os.ReadDir(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ociState
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		st, err := readState(filepath.Join(root, e.Name()))
		if err != nil {
			continue // being created or deleted
		}
		out = append(out, st.oci())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
