package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("inspect", command{usage: "CONTAINER", short: "print a container's and its VM's state as JSON", run: inspectCmd})
}

func inspectCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("inspect", commands["inspect"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: want exactly one")
	}
	s, err := vc.FetchSandbox(ctx, g.stateRoot, fs.Arg(0))
	if err != nil {
		return err
	}
	defer s.Close()
	cs, err := s.ListContainers(ctx)
	if err != nil {
		return err
	}
	out := struct {
		Sandbox    vc.SandboxStatus     `json:"sandbox"`
		Containers []vc.ContainerStatus `json:"containers"`
	}{s.Status(), cs}
	e := json.NewEncoder(os.Stdout)
	e.SetIndent("", "  ")
	return e.Encode(out)
}
