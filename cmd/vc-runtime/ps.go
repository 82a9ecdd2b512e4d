package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("ps", command{
		usage: "[--format table|json] ID [PS OPTIONS...]",
		short: "list the processes of a container (guest pids: they run in the VM)",
		run:   psCmd,
	})
}

func psCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("ps")
	format := fs.String("format", "table", "select one of: table or json")
	fs.StringVar(format, "f", "table", "select one of: table or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("%q requires a minimum of 1 argument", "ps")
	}
	id := fs.Arg(0)
	c, closeFn, err := liveContainer(ctx, g, id)
	if err != nil {
		return err
	}
	defer closeFn()
	switch *format {
	case "json":
		out, err := c.ProcessList(ctx, "-o", psJSONFields)
		if err != nil {
			return err
		}
		pids, err := parsePids(out)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(pids)
	case "table":
		psArgs := fs.Args()[1:]
		if len(psArgs) == 0 {
			psArgs = []string{"-ef"}
		}
		out, err := c.ProcessList(ctx, psArgs...)
		if err != nil {
			return err
		}
		fmt.Fprint(stdout, out)
		return nil
	}
	return fmt.Errorf("invalid format option")
}

// psJSONFields are the fields ps --format json asks the guest's ps for.
const psJSONFields = "pid,args"

// parsePids reads `ps -o pid,args` output: a header, then a pid and a
// command line a line; the ps that printed it is left out.
func parsePids(out string) ([]int, error) {
	pids := []int{}
	for i, l := range strings.Split(strings.TrimSpace(out), "\n") {
		pid, args, _ := strings.Cut(strings.TrimSpace(l), " ")
		if i == 0 || pid == "" || strings.TrimSpace(args) == "ps -o "+psJSONFields {
			continue
		}
		p, err := strconv.Atoi(pid)
		if err != nil {
			return nil, fmt.Errorf("ps output line %q: %w", l, err)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// liveContainer is a handle on container id, which must be running or
// paused, through its owner's agent socket; closeFn drops the connection.
func liveContainer(ctx context.Context, g *globals, id string) (_ *vc.Container, closeFn func(), err error) {
	st, err := loadState(g.root, id)
	if err != nil {
		return nil, nil, err
	}
	if s := st.status(); s != statusRunning && s != statusPaused {
		return nil, nil, errNotRunning
	}
	s, err := vc.FetchSandbox(ctx, st.vmDir(g.root), sandboxID)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", id, err)
	}
	return s.Container(id), s.Close, nil
}
