// vc-agent-ctl is a debug client for vc-agent: it calls any RPC of the
// agent's AgentService or Health service with a request written in JSON
// and prints the reply as JSON, like Kata's kata-agent-ctl.
//
//	vc-agent-ctl -addr unix:///run/vc/sbx/agent.sock call Check
//	vc-agent-ctl -addr vsock://3:1024 call ListInterfaces
//	vc-agent-ctl -addr hvsock:///run/vc/sbx/hv.sock:1024 call SignalProcess '{"container_id":"c1","signal":15}'
//	vc-agent-ctl list
//
// Requests and replies use protobuf's JSON mapping (protojson): field
// names as in agent.proto or in lowerCamelCase, bytes in base64, enums by
// name. A request of "-" is read from standard input; no request is the
// empty message.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/virtcontainers/vc/pkg/agent"
)

// Exit codes.
const (
	exitOK    = 0
	exitRPC   = 1 // the call failed
	exitUsage = 2 // the command line is wrong
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: vc-agent-ctl [flags] call METHOD [JSON-REQUEST | -]
       vc-agent-ctl list

Calls an RPC of vc-agent's AgentService or Health service and prints the
reply as JSON. METHOD is a method name (Check, CreateContainer, ...),
optionally qualified by its service (Health.Check, grpc.AgentService.ListRoutes).

Flags:
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vc-agent-ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", os.Getenv("VC_AGENT_ADDR"), "agent address: unix:///path, vsock://CID:PORT or hvsock:///path:PORT (default $VC_AGENT_ADDR)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on the call after this long (0: never)")
	compact := fs.Bool("compact", false, "print the reply on one line")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	ms, err := methods()
	if err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: %v\n", err)
		return exitRPC
	}
	args = fs.Args()
	if len(args) == 0 {
		fs.Usage()
		return exitUsage
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			fmt.Fprintln(stderr, "vc-agent-ctl: list takes no arguments")
			return exitUsage
		}
		for _, m := range ms {
			fmt.Fprintf(stdout, "%s.%s(%s) returns (%s)\n", m.service, m.name, m.input.Descriptor().FullName(), m.output.Descriptor().FullName())
		}
		return exitOK
	case "call":
	default:
		fmt.Fprintf(stderr, "vc-agent-ctl: unknown command %q (want call or list)\n", args[0])
		return exitUsage
	}
	if len(args) < 2 || len(args) > 3 {
		fmt.Fprintln(stderr, "vc-agent-ctl: usage: call METHOD [JSON-REQUEST | -]")
		return exitUsage
	}
	m, err := findMethod(ms, args[1])
	if err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: %v\n", err)
		return exitUsage
	}
	reqJSON := []byte("{}")
	if len(args) == 3 {
		reqJSON = []byte(args[2])
		if args[2] == "-" {
			if reqJSON, err = io.ReadAll(stdin); err != nil {
				fmt.Fprintf(stderr, "vc-agent-ctl: read the request from standard input: %v\n", err)
				return exitUsage
			}
		}
	}
	req := m.input.New().Interface()
	if err := protojson.Unmarshal(reqJSON, req); err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: request for %s is not a %s in JSON: %v\n", m.name, m.input.Descriptor().FullName(), err)
		return exitUsage
	}
	if *addr == "" {
		fmt.Fprintln(stderr, "vc-agent-ctl: no agent address: give -addr or set VC_AGENT_ADDR")
		return exitUsage
	}
	if _, err := agent.ParseAddress(*addr); err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: -addr: %v\n", err)
		return exitUsage
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	conn, err := agent.Dial(ctx, *addr)
	if err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: %v\n", err)
		return exitRPC
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	resp := m.output.New().Interface()
	if err := client.Call(ctx, m.service, m.name, req, resp); err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: %s.%s: %v\n", m.service, m.name, err)
		return exitRPC
	}
	opts := protojson.MarshalOptions{EmitUnpopulated: true}
	if !*compact {
		opts.Indent = "  "
	}
	out, err := opts.Marshal(resp)
	if err != nil {
		fmt.Fprintf(stderr, "vc-agent-ctl: print the %s reply: %v\n", m.name, err)
		return exitRPC
	}
	fmt.Fprintln(stdout, strings.TrimSpace(string(out)))
	return exitOK
}
