package main

import (
	"context"
	"fmt"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("top", command{usage: "CONTAINER [ps OPTIONS]", short: "list a container's processes (the image's ps)", run: topCmd})
}

func topCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("top", commands["top"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: missing")
	}
	id, err := resolveContainer(ctx, g, fs.Arg(0))
	if err != nil {
		return err
	}
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	out, err := s.Container(id).ProcessList(ctx, fs.Args()[1:]...)
	if err != nil {
		return err
	}
	fmt.Print(out)
	return nil
}
