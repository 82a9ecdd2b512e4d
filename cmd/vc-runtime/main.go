// vc-runtime is a runc-compatible OCI runtime whose containers run in
// lightweight VMs, one VM per container (or per pod), so that podman (and
// other tools that drive runc) can run them: podman --runtime
// /path/to/vc-runtime.
//
//	vc-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug] COMMAND [ARGS]
//
// A container's VM is kept by an owner process, started by create and
// living as long as the container; its pid is the container's pid (what
// --pid-file receives and state reports), and it exits with the
// container's exit status. A container whose namespace paths name
// another container's owner (a podman pod's) runs in that container's VM
// instead (see pod.go); its own owner keeps no VM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/tracing"
)

// version is the runtime's version; specVersion the OCI runtime spec it
// implements.
const (
	version     = "0.1.0"
	specVersion = "1.2.0"
)

// stdout is where commands print (tests replace it).
var stdout io.Writer = os.Stdout

// DefaultRoot is where container state lives unless --root says otherwise.
const DefaultRoot = "/run/vc-runtime"

// globals are the flags every command takes before its name (runc's).
type globals struct {
	root          string
	logPath       string
	logFormat     string
	systemdCgroup bool
	debug         bool
	// Not runc's: where guest images are kept, and the VM's acceleration.
	dataRoot string
	accel    string
	// factory is a factory's directory (vc factory init): VMs that fit
	// its template start from it; empty for none.
	factory string

	log     *slog.Logger
	logFile *os.File
}

type command struct {
	usage string
	short string
	run   func(ctx context.Context, g *globals, args []string) error
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

// exitError carries a process exit code out of a command, with nothing
// to print.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(Main(os.Args[1:], os.Stderr))
}

// Main runs the command line args and returns the exit code. Errors are
// printed on stderr and logged to --log.
func Main(args []string, stderr io.Writer) int {
	g, rest, err := parseGlobals(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintf(stdout, "vc-runtime version %s\nspec: %s\n", version, specVersion)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer g.close()
	if len(rest) == 0 {
		usage(stderr)
		return 1
	}
	c, ok := commands[rest[0]]
	if !ok {
		return g.fail(stderr, fmt.Errorf("unknown command %q", rest[0]))
	}
	g.log = g.log.With("cmd", rest[0])
	slog.SetDefault(g.log)
	g.log.Debug("invoked", "args", args)
	// Tracing: the OTEL_* environment turns it on (docs/observability.md).
	shutdownTracing, err := tracing.Setup(context.Background(), tracing.Config{}, "vc-runtime")
	if err != nil {
		return g.fail(stderr, err)
	}
	ctx, span := tracing.Start(tracing.FromEnv(context.Background()), "vc-runtime "+rest[0])
	// The owner it spawns (create, run, exec) is a child of this span.
	for _, kv := range tracing.Environ(ctx) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	err = c.run(ctx, g, rest[1:])
	tracing.End(span, err)
	shutdownTracing(context.Background())
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	default:
		return g.fail(stderr, err)
	}
}

var errVersion = errors.New("version")

// parseGlobals reads the global flags and sets up logging.
func parseGlobals(args []string, stderr io.Writer) (*globals, []string, error) {
	g := &globals{}
	fs := flag.NewFlagSet("vc-runtime", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&g.root, "root", DefaultRoot, "root directory for storage of container state (this should be located in tmpfs)")
	fs.StringVar(&g.logPath, "log", "", "set the log file to write runtime logs to (default is stderr)")
	fs.StringVar(&g.logFormat, "log-format", "text", "set the log format ('text' (default), or 'json')")
	fs.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "accepted for runc compatibility; the container's cgroups are in its VM")
	fs.BoolVar(&g.debug, "debug", false, "enable debug logging")
	fs.StringVar(&g.dataRoot, "data-root", envOr("VC_DATA_ROOT", guestconfig.DefaultDataRoot), "where guest images are kept ($VC_DATA_ROOT)")
	fs.StringVar(&g.accel, "accel", envOr("VC_ACCEL", "auto"), "VM acceleration: auto, kvm or tcg ($VC_ACCEL)")
	fs.StringVar(&g.factory, "factory", os.Getenv("VC_FACTORY"), "a factory's directory (vc factory init): a VM that fits its template starts from it, others boot; a damaged template fails create ($VC_FACTORY)")
	showVersion := fs.Bool("version", false, "print the version")
	fs.BoolVar(showVersion, "v", false, "print the version")
	fs.Usage = func() { usage(stderr); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if *showVersion {
		return nil, nil, errVersion
	}
	if g.root == "" {
		return nil, nil, errors.New("--root: empty")
	}
	// The owner processes work from /: their paths are absolute.
	for _, p := range []*string{&g.root, &g.dataRoot, &g.logPath, &g.factory} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, nil, err
		}
		*p = abs
	}
	var w io.Writer = stderr
	if g.logPath != "" {
		f, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--log: %w", err)
		}
		g.logFile, w = f, f
	}
	h, err := logHandler(w, g.logFormat, g.debug)
	if err != nil {
		g.close()
		return nil, nil, err
	}
	g.log = slog.New(h)
	return g, fs.Args(), nil
}

// logHandler writes runc's log lines: text, or JSON objects with level,
// msg and time ({"level":"error","msg":"...","time":"..."}).
func logHandler(w io.Writer, format string, debug bool) (slog.Handler, error) {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.LevelKey {
			a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
		}
		return a
	}}
	switch format {
	case "text", "":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// fail reports err as runc does: on stderr, and in the log when --log
// names one; the exit code is 1.
func (g *globals) fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, err)
	if g.logFile != nil {
		g.log.Error(err.Error())
	}
	return 1
}

func (g *globals) close() {
	if g.logFile != nil {
		g.logFile.Close()
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: vc-runtime [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] [--debug] COMMAND [ARGS]\n\ncommands:")
	var names []string
	for n, c := range commands {
		if c.short != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].short)
	}
}

// newFlags returns a flag set for a command.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: vc-runtime %s %s\n", name, commands[name].usage)
		fs.PrintDefaults()
	}
	return fs
}

// oneID reads a command's only argument, the container id.
func oneID(fs *flag.FlagSet, name string) (string, error) {
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%q requires exactly 1 argument(s)", name)
	}
	return fs.Arg(0), nil
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
