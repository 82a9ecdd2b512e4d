// vc runs containers in lightweight VMs, one VM per container, for a
// person at a terminal.
//
//	vc run [--rm] [-d] [-i] [-t] IMAGE -- CMD ARGS...
//	vc exec | ps | logs | stop | rm | stats | inspect | check | image
//	vc pull | images | rmi | load | save | login | logout | volume | network
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/pkg/persist"
)

// globals are the flags every command takes before its name.
type globals struct {
	stateRoot string
	dataRoot  string
	debug     bool
}

type command struct {
	usage string
	short string
	run   func(ctx context.Context, g *globals, args []string) error
}

var commands = map[string]command{}

// helpArgs are the command's arguments, for helpAsked.
var helpArgs []string

func register(name string, c command) { commands[name] = c }

// exitError ends vc with code; with err, err is printed first (a container
// that could not start: docker's 125/126/127 with the reason).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e exitError) Unwrap() error { return e.err }

// ExitCode is the code a detached owner reports with the reason
// (internal/spawn): only a reason's, a bare exit status is no report.
func (e exitError) ExitCode() int {
	if e.err == nil {
		return 0
	}
	return e.code
}

func main() {
	g := &globals{}
	fs := flag.NewFlagSet("vc", flag.ContinueOnError)
	fs.StringVar(&g.stateRoot, "state-root", envOr("VC_STATE_ROOT", persist.DefaultRoot), "where sandbox state lives")
	fs.StringVar(&g.dataRoot, "data-root", envOr("VC_DATA_ROOT", "/var/lib/vc"), "where guest images and root filesystems are kept")
	fs.BoolVar(&g.debug, "debug", os.Getenv("VC_DEBUG") != "", "log debug messages")
	fs.SetOutput(io.Discard) // mistakes get the short form below
	fs.Usage = func() {}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(os.Stdout)
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, flagError(err, os.Args[1:]))
		fmt.Fprintln(os.Stderr, "See 'vc --help'.")
		os.Exit(125)
	}
	level := slog.LevelWarn
	if g.debug {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if !g.debug {
		// ttRPC logs through logrus, at error level, the answer to a
		// call whose context ended (a forwarded Ctrl-C ends vc's): noise
		// to a person. vc reports its own failures.
		logrus.SetLevel(logrus.PanicLevel)
	}
	args := fs.Args()
	if len(args) == 0 {
		usage(os.Stderr)
		os.Exit(2)
	}
	c, ok := commands[args[0]]
	if !ok {
		// docker's words for it.
		fmt.Fprintf(os.Stderr, "vc: '%s' is not a vc command.\nSee 'vc --help'.\n", args[0])
		os.Exit(2)
	}
	helpArgs = args[1:]
	ctx, cancel := signal.NotifyContext(context.Background(), unix.SIGTERM)
	defer cancel()
	// Tracing: the OTEL_* environment turns it on (docs/observability.md).
	shutdownTracing, err := tracing.Setup(ctx, tracing.Config{}, "vc")
	if err != nil {
		fmt.Fprintf(os.Stderr, "vc: %v\n", err)
		os.Exit(125)
	}
	err = runTraced(ctx, c, g, args)
	shutdownTracing(context.WithoutCancel(ctx))
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "vc %s: %v\n", args[0], ee.err)
		}
		os.Exit(ee.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case usageWanted != "":
		// A mistake in the command's flags or arguments: one line for
		// it and where the usage is, as docker says it (the usage itself
		// would bury the line).
		if msg := flagError(err, helpArgs); msg != err.Error() {
			fmt.Fprintln(os.Stderr, msg)
		} else {
			fmt.Fprintf(os.Stderr, "vc %s: %v\n", args[0], err)
		}
		fmt.Fprintf(os.Stderr, "See 'vc %s --help'.\n", usageWanted)
		os.Exit(125)
	default:
		fmt.Fprintf(os.Stderr, "vc %s: %v\n", args[0], err)
		os.Exit(125)
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vc [--state-root DIR] [--data-root DIR] [--debug] COMMAND [ARGS]\n\ncommands:")
	var names []string
	for n, c := range commands {
		if c.short != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].short)
	}
	fmt.Fprintln(w, "\nvc help COMMAND (or vc COMMAND --help) describes a command's flags.")
}

// usageWanted names the command whose flags or arguments were wrong (its
// Usage was called without help being asked): main then ends with
// docker's hint, "See 'vc NAME --help'.", instead of the whole usage.
var usageWanted string

// newFlags returns a flag set for a command whose usage line is usage.
// Asked for (--help, -h, vc help CMD) the usage goes to stdout; after a
// mistake nothing is printed here: main prints the error and a hint.
func newFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// The flag package prints its errors and the defaults to the output
	// before returning the error; main says it shorter.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		if !helpAsked(fs) {
			usageWanted = name
			return
		}
		w := os.Stdout
		fmt.Fprintf(w, "usage: vc %s %s\n", name, usage)
		if c := commands[name]; c.short != "" {
			fmt.Fprintf(w, "\n%s\n\n", c.short)
		}
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	return fs
}

// helpAsked tells whether the arguments being parsed ask for help: the
// flag package calls Usage for -h/--help and for errors alike.
func helpAsked(fs *flag.FlagSet) bool {
	for _, a := range helpArgs {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

// flagError is what to print for err, the flag package's: docker's
// "unknown flag: --foo" (or "unknown shorthand flag: 'x' in -x") for a
// flag the command does not have, as args spelt it; err's text otherwise.
func flagError(err error, args []string) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err.Error()
	}
	typed := "--" + name
	for _, a := range args {
		if a == "--" {
			break
		}
		if f, _, _ := strings.Cut(a, "="); strings.HasPrefix(f, "-") && strings.TrimLeft(f, "-") == name {
			typed = f
			break
		}
	}
	if len(name) == 1 && !strings.HasPrefix(typed, "--") {
		return fmt.Sprintf("unknown shorthand flag: '%s' in %s", name, typed)
	}
	return "unknown flag: " + typed
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseContainers parses a command's flags and returns its CONTAINER
// arguments, at least one, as names (an id prefix resolved: ids.go).
func parseContainers(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) ([]string, error) {
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return nil, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return nil, fmt.Errorf("CONTAINER: missing")
	}
	return resolveContainers(ctx, g, fs.Args())
}

// runTraced runs command c in a span of its own ("vc run"), child of the
// TRACEPARENT of the environment when set (a detached owner's is the vc
// run that spawned it).
func runTraced(ctx context.Context, c command, g *globals, args []string) error {
	if !tracing.Enabled() {
		return c.run(ctx, g, args[1:])
	}
	ctx, span := tracing.Start(tracing.FromEnv(ctx), "vc "+strings.TrimPrefix(args[0], "__"))
	err := c.run(ctx, g, args[1:])
	spanErr := err
	var ee exitError
	if errors.As(err, &ee) && ee.err == nil {
		spanErr = nil // the container's exit status, not a failure of vc's
	}
	tracing.End(span, spanErr)
	return err
}
