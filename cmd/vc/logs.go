package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/virtcontainers/vc/pkg/persist"
)

func init() {
	register("logs", command{usage: "CONTAINER", short: "print a container's output", run: logsCmd})
}

func logsCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("logs", commands["logs"].usage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: want exactly one")
	}
	id := fs.Arg(0)
	if err := persist.ValidateID("container", id); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(g.stateRoot, id, "container.log"))
	if err != nil {
		return fmt.Errorf("container %s: no logs: %w", id, err)
	}
	defer f.Close()
	_, err = io.Copy(os.Stdout, f)
	return err
}
