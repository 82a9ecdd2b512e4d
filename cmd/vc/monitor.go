package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/virtcontainers/vc/pkg/monitor"
	"github.com/virtcontainers/vc/pkg/persist"
)

func init() {
	register("monitor", command{usage: "[--listen ADDR] [--timeout D] [--roots DIR,...]", short: "serve every running sandbox's metrics (vc's, the shim's, vc-runtime's) on /metrics in Prometheus' format", run: monitorCmd})
}

func monitorCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("monitor", commands["monitor"].usage)
	listen := fs.String("listen", "127.0.0.1:9375", "address to serve /metrics on")
	timeout := fs.Duration("timeout", 3*time.Second, "how long each sandbox's guest has to answer a scrape")
	roots := fs.String("roots", strings.Join(monitor.DefaultRoots, ","), "state roots to find sandboxes in, comma-separated (their subdirectories too, one level down); --state-root is added when not the default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", *timeout)
	}
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d = filepath.Clean(strings.TrimSpace(d)); d != "." && !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range strings.Split(*roots, ",") {
		add(d)
	}
	if g.stateRoot != "" && g.stateRoot != persist.DefaultRoot {
		add(g.stateRoot)
	}
	if len(dirs) == 0 {
		return fmt.Errorf("--roots %q: no directory", *roots)
	}
	src, err := monitor.NewHost(dirs)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.NewCollector(src, *timeout),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "vc_monitor"}),
		collectors.NewGoCollector())

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "vc monitor: metrics on /metrics")
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	slog.Info("monitor serving", "addr", ln.Addr().String(), "roots", dirs, "timeout", *timeout)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
