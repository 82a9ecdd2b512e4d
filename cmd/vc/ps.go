package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("ps", command{usage: "[-a] [-q] [--no-trunc] [--format json|TEMPLATE|table TEMPLATE]", short: "list containers", run: psCmd})
}

// psRow is a line of vc ps, and what --format's templates see: docker's
// fields (ID is the id, 12 digits unless --no-trunc; Names the name;
// Ports the published ports as docker writes them).
type psRow struct {
	ID, Names, Image, Command, State, Status, Ports string
	CreatedAt                                       time.Time
	ExitCode                                        int32
}

func psCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("ps", commands["ps"].usage)
	all := fs.Bool("a", false, "show stopped containers too")
	fs.BoolVar(all, "all", false, "the same as -a")
	quiet := fs.Bool("q", false, "print ids only")
	fs.BoolVar(quiet, "quiet", false, "the same as -q")
	noTrunc := fs.Bool("no-trunc", false, "print whole ids (64 digits)")
	format := fs.String("format", "", "json (a JSON object a line), a Go template of .ID .Names .Image .Command .State .Status .Ports .CreatedAt .ExitCode, or table TEMPLATE (with a header)")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	print, flush, err := psPrinter(os.Stdout, *format, *quiet)
	if err != nil {
		return err
	}
	list, err := vc.ListSandbox(ctx, g.stateRoot)
	if err != nil {
		return err
	}
	for _, sb := range list {
		if !*all && sb.State == vc.StateStopped {
			continue
		}
		r := psRow{ID: containerID(g, sb.ID), Names: sb.ID, State: string(sb.State), Status: string(sb.State), CreatedAt: sb.Created,
			Ports: dockerPorts(sb.Config.NAT.Publish)}
		if !*noTrunc {
			r.ID = r.ID[:shortIDLen]
		}
		cs, _ := vc.ContainerStatuses(ctx, g.stateRoot, sb.ID)
		for _, c := range cs {
			if c.ID == sb.ID {
				r.Image = c.Config.Annotations["vc.image"]
				if c.Config.Spec != nil && c.Config.Spec.Process != nil {
					r.Command = strings.Join(c.Config.Spec.Process.Args, " ")
				}
				r.State, r.Status, r.ExitCode = string(c.State), string(c.State), c.ExitCode
				if c.State == vc.StateStopped {
					r.Status = fmt.Sprintf("exited (%d) %s ago", c.ExitCode, ago(c.Exited))
				}
			}
		}
		if err := print(r); err != nil {
			return err
		}
	}
	return flush()
}

// psPrinter returns how ps prints its rows, as --format and -q say.
func psPrinter(out io.Writer, format string, quiet bool) (print func(psRow) error, flush func() error, err error) {
	w := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	switch {
	case quiet:
		return func(r psRow) error { _, err := fmt.Fprintln(w, r.ID); return err }, w.Flush, nil
	case format == "json":
		enc := json.NewEncoder(out)
		return func(r psRow) error { return enc.Encode(r) }, func() error { return nil }, nil
	case format == "":
		fmt.Fprintln(w, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
		return func(r psRow) error {
			_, err := fmt.Fprintf(w, "%s\t%s\t%q\t%s ago\t%s\t%s\t%s\n", r.ID, r.Image, r.Command, ago(r.CreatedAt), r.Status, r.Ports, r.Names)
			return err
		}, w.Flush, nil
	}
	text, table := strings.CutPrefix(format, "table ")
	text = strings.ReplaceAll(text, `\t`, "\t") // as docker takes it from a shell
	tmpl, err := template.New("format").Parse(text)
	if err != nil {
		return nil, nil, fmt.Errorf("--format %q: %w", format, err)
	}
	if table {
		// The header: each {{.Field}} by its name in capitals.
		header := regexp.MustCompile(`\{\{\s*\.(\w+)\s*\}\}`).ReplaceAllStringFunc(text, func(m string) string {
			return strings.ToUpper(strings.Trim(m, "{}. "))
		})
		fmt.Fprintln(w, header)
	}
	return func(r psRow) error {
		if err := tmpl.Execute(w, r); err != nil {
			return fmt.Errorf("--format %q: %w", format, err)
		}
		_, err := fmt.Fprintln(w)
		return err
	}, w.Flush, nil
}

// dockerPorts writes published ports as docker ps does:
// 0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp, comma-separated.
func dockerPorts(ports []vc.PortMapping) string {
	var out []string
	for _, p := range ports {
		ip, proto := p.HostIP, p.Protocol
		if ip == "" {
			ip = "0.0.0.0"
		}
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.HostPort, p.ContainerPort, proto))
	}
	return strings.Join(out, ", ")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return time.Since(t).Round(time.Second).String()
}
