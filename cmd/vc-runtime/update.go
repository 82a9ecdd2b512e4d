package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	register("update", command{
		usage: "--resources FILE|- ID",
		short: "update a container's resource constraints (its VM grows or shrinks to fit the limits)",
		run:   updateCmd,
	})
}

func updateCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("update")
	resources := fs.String("resources", "", "path to the file containing the resources to update, or '-' to read from the standard input")
	fs.StringVar(resources, "r", "", "path to the file containing the resources to update, or '-' to read from the standard input")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "update")
	if err != nil {
		return err
	}
	if *resources == "" {
		return errors.New("update: --resources is the only way to give resources (the other runc flags are not supported)")
	}
	var r io.Reader = os.Stdin
	if *resources != "-" {
		f, err := os.Open(*resources)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	var res specs.LinuxResources
	if err := json.NewDecoder(r).Decode(&res); err != nil {
		return fmt.Errorf("decode resources: %w", err)
	}
	c, closeFn, err := liveContainer(ctx, g, id)
	if err != nil {
		return err
	}
	defer closeFn()
	return c.Update(ctx, &res)
}
