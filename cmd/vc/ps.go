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
	register("ps", command{usage: "[-a]", short: "list containers", run: psCmd})
}

func psCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("ps", commands["ps"].usage)
	all := fs.Bool("a", false, "show stopped containers too")
	quiet := fs.Bool("q", false, "print ids only")
	if err := fs.Parse(args); err != nil {
		return err
	}
	list, err := vc.ListSandbox(ctx, g.stateRoot)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	if !*quiet {
		fmt.Fprintln(w, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS")
	}
	for _, sb := range list {
		if !*all && sb.State == vc.StateStopped {
			continue
		}
		if *quiet {
			fmt.Fprintln(w, sb.ID)
			continue
		}
		image, command, status := "", "", string(sb.State)
		cs, _ := vc.ContainerStatuses(ctx, g.stateRoot, sb.ID)
		for _, c := range cs {
			if c.ID == sb.ID {
				image = c.Config.Annotations["vc.image"]
				if c.Config.Spec != nil && c.Config.Spec.Process != nil {
					command = strings.Join(c.Config.Spec.Process.Args, " ")
				}
				status = string(c.State)
				if c.State == vc.StateStopped {
					status = fmt.Sprintf("exited (%d) %s ago", c.ExitCode, ago(c.Exited))
				}
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%q\t%s ago\t%s\n", sb.ID, image, command, ago(sb.Created), status)
	}
	return w.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return time.Since(t).Round(time.Second).String()
}
