package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/virtcontainers/vc/pkg/oci"
)

func init() {
	register("spec", command{usage: "[--bundle DIR]", short: "create a new specification file (config.json)", run: specCmd})
}

func specCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("spec")
	bundle := fs.String("bundle", "", "path to the root of the bundle directory")
	fs.StringVar(bundle, "b", "", "path to the root of the bundle directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%q requires exactly 0 argument(s)", "spec")
	}
	return writeSpec(filepath.Join(*bundle, "config.json"))
}

// writeSpec writes runc spec's default: sh on a terminal, root "rootfs".
func writeSpec(path string) error {
	if _, err := os.Stat(path); err == nil {
		return errors.New("File config.json exists. Remove it first.")
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	spec := oci.DefaultSpec([]string{"sh"}, nil, "/", true)
	spec.Root.Readonly = true
	spec.Hostname = "vc-runtime"
	b, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o666)
}
