package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
)

// The factory: a template VM (pkg/factory) under
// <data-root>/factory, made by `vc factory init`. `vc run` (and create,
// restart) starts from it when it is there (--factory auto, the default),
// the run's VM fits it (size, kernel, initrd, QEMU, network: a template
// made with --network nat serves runs on the NAT network, one made with
// --network none the others), and
// boots otherwise, saying why on stderr. A template that is damaged or
// made from files that have changed since is refused: the run fails,
// naming what is wrong, until `vc factory init` makes it again or the run
// says --factory off. --factory on fails instead of booting.

func init() {
	register("factory", command{
		usage: "init [--cpus N] [-m SIZE] [--kernel K --initrd I] [--accel A] [--network nat|none] | cache [--size N] | status | destroy",
		short: "make, show or remove the template VM that `vc run` starts from instead of booting, and its cache of started VMs",
		run:   factoryCmd,
	})
}

// factoryDir is <data-root>/factory, absolute (the library wants it so).
func factoryDir(g *globals) string {
	dir := filepath.Join(g.dataRoot, "factory")
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

func factoryCmd(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("want a subcommand: init, cache, status or destroy")
	}
	dir := factoryDir(g)
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Printf(`usage: vc factory %s

  init     boot the guest image once and save it as a template in %s
           (replacing one there); vc run starts from it instead of booting
  cache    keep --size N VMs of the template started (default 2), each
           handed to a run that fits the template: it skips QEMU's start
           and the restore too. Runs in the foreground until SIGINT or
           SIGTERM or destroy; runs taking no VM from it (none ready, or
           -p ports) start from the template
  status   show the template, whether it is usable, and the cache
  destroy  stop the cache, remove the template and whatever a failed init
           left (VMs taken from the cache run on with their containers)

vc run --factory auto|on|off: start from the template when it fits (auto,
the default), always (on: fail when it does not fit) or never (off).
`, commands["factory"].usage, dir)
		return nil
	case "init":
		fs := newFlags("factory init", "[--cpus N] [-m SIZE] [--kernel K --initrd I] [--accel A] [--network nat|none]")
		cpus := fs.Uint("cpus", 0, fmt.Sprintf("virtual CPUs of the template's VM (default %d); runs with other --cpus boot", hypervisor.DefaultCPUs))
		mem := fs.String("memory", "", fmt.Sprintf("memory of the template's VM (default %dM); runs with other --memory boot", hypervisor.DefaultMemoryMiB))
		fs.StringVar(mem, "m", "", "the same as --memory")
		kernel := fs.String("kernel", "", "guest kernel (default: the built guest image)")
		initrd := fs.String("initrd", "", "guest initrd (default: the built guest image)")
		accel := fs.String("accel", "auto", "acceleration: auto, kvm or tcg")
		network := fs.String("network", "nat", "the runs the template serves: nat (the default network; its VM has the NAT NIC) or none (--network none and network namespaces, whose NICs are hotplugged)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("factory init: unexpected arguments %q", fs.Args())
		}
		var noNAT bool
		switch *network {
		case "nat":
		case "none":
			noNAT = true
		default:
			return fmt.Errorf("--network %q: want nat or none: %w", *network, errdefs.ErrInvalidArgument)
		}
		h := vc.HypervisorConfig{Accel: *accel, Debug: g.debug}
		if *cpus != 0 {
			var err error
			if h.CPUs, err = vc.CheckHostCPUs("--cpus", uint64(*cpus)); err != nil {
				return err
			}
		}
		if *mem != "" {
			n, err := parseMiB(*mem)
			if err != nil {
				return fmt.Errorf("--memory %q: %w", *mem, err)
			}
			h.MemoryMiB = n
		}
		var err error
		if h.Kernel, h.Initrd, err = guestImage(ctx, g, *kernel, *initrd); err != nil {
			return err
		}
		if _, err := os.Stat(dir); err == nil {
			fmt.Fprintf(os.Stderr, "replacing the template in %s\n", dir)
			if err := factory.Destroy(dir); err != nil {
				return err
			}
		}
		begin := time.Now()
		f, err := factory.Init(ctx, dir, factory.Config{Hypervisor: h, NoNAT: noNAT})
		if err != nil {
			return err
		}
		m := f.Manifest()
		fmt.Printf("template made in %s (%d MiB, %d vCPU, boot %s, took %s)\n", dir, m.MemoryMiB, m.CPUs,
			m.BootTime.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		return nil
	case "cache":
		fs := newFlags("factory cache", "[--size N]")
		size := fs.Int("size", 2, "how many started VMs to keep ready (1 to 64); each holds its memory (most of it shared with the template's file)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("factory cache: unexpected arguments %q", fs.Args())
		}
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		if !g.debug {
			// A service: what it hands out and why it fails is logged.
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
		}
		return factory.ServeCache(ctx, dir, *size)
	case "status":
		st, err := factory.Inspect(dir)
		if errdefs.IsNotFound(err) {
			fmt.Printf("no template in %s\n", dir)
			return nil
		}
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintf(w, "dir\t%s\n", st.Dir)
		if !st.Ready {
			fmt.Fprintf(w, "ready\tno: %s\n", st.Error)
			return w.Flush()
		}
		m := st.Manifest
		fmt.Fprintf(w, "ready\tyes\n")
		fmt.Fprintf(w, "created\t%s (%s ago)\n", m.Created.Local().Format(time.RFC3339), ago(m.Created))
		fmt.Fprintf(w, "vm\t%d vCPU, %d MiB, %s, nat %v\n", m.CPUs, m.MemoryMiB, m.Accel, m.NAT)
		fmt.Fprintf(w, "kernel\t%s\n", m.Kernel.Path)
		fmt.Fprintf(w, "initrd\t%s\n", m.Initrd.Path)
		fmt.Fprintf(w, "qemu\t%s\n", m.QEMU.Path)
		if m.AgentVersion != "" {
			fmt.Fprintf(w, "agent\t%s\n", m.AgentVersion)
		}
		if len(m.KernelParams) > 0 || m.Debug {
			fmt.Fprintf(w, "kernel params\t%s (debug %v)\n", strings.Join(m.KernelParams, " "), m.Debug)
		}
		fmt.Fprintf(w, "template boot\t%s\n", m.BootTime.Round(time.Millisecond))
		fmt.Fprintf(w, "state\t%s\n", human(uint64(st.StateBytes)))
		fmt.Fprintf(w, "memory file\t%s on disk of %s\n", human(uint64(st.MemoryFileBytes)), human(uint64(m.MemoryMiB)<<20))
		switch cs, err := factory.QueryCache(ctx, dir); {
		case errdefs.IsNotFound(err):
			fmt.Fprintf(w, "cache\tnot running (vc factory cache starts it)\n")
		case err != nil:
			fmt.Fprintf(w, "cache\t%v\n", err)
		default:
			fmt.Fprintf(w, "cache\tpid %d, %d of %d ready, %d starting, %d handed out (%d running)\n", cs.Pid, cs.Ready, cs.Size, cs.Starting, cs.Taken, cs.Running)
			if cs.LastError != "" {
				fmt.Fprintf(w, "cache error\t%s\n", cs.LastError)
			}
		}
		return w.Flush()
	case "destroy":
		if err := factory.Destroy(dir); err != nil {
			return err
		}
		fmt.Printf("removed %s\n", dir)
		return nil
	}
	return fmt.Errorf("unknown factory subcommand %q: want init, cache, status or destroy", args[0])
}

// useFactory decides whether scfg's VM starts from the factory's
// template (factory.Use sets scfg.VMSource), for mode auto, on or off.
func useFactory(g *globals, mode string, scfg *vc.SandboxConfig) error {
	switch mode {
	case "off":
		return nil
	case "":
		mode = "auto" // options saved before there was a factory
	}
	err := factory.Use(scfg, factoryDir(g))
	switch {
	case err == nil:
		return nil
	case mode == "auto" && errors.Is(err, factory.ErrTemplateInvalid):
		// Never booted from, and no reason to fail a run the template
		// was only to speed up: it boots, saying why.
		fmt.Fprintf(os.Stderr, "vc: booting, not starting from the template: %v (make it again with `vc factory init`)\n", err)
		return nil
	case errors.Is(err, factory.ErrTemplateInvalid):
		return fmt.Errorf("%w\n(make it again with `vc factory init`, or run with --factory off)", err)
	case mode == "auto" && errdefs.IsNotFound(err):
		return nil
	case mode == "auto" && errors.Is(err, factory.ErrTemplateMismatch):
		fmt.Fprintf(os.Stderr, "vc: booting, not starting from the template: %v\n", err)
		return nil
	}
	return fmt.Errorf("--factory %s: %w", mode, err)
}
