package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/virtcontainers/vc/pkg/oci"
)

func init() {
	register("features", command{usage: "", short: "show the enabled features (JSON)", run: featuresCmd})
}

func featuresCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("features")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%q requires exactly 0 argument(s)", "features")
	}
	f := oci.Features()
	f.Annotations["io.virtcontainers.runtime.version"] = version
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "    ")
	return enc.Encode(f)
}
