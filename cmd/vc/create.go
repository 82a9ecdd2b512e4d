package main

import "context"

func init() {
	register("create", command{
		usage: "[run's flags, without -d] IMAGE [-- CMD ARGS...]",
		short: "create a container in its own VM, for vc start to start",
		run:   createCmd,
	})
}

// createCmd boots the VM and creates the container in it, stopped before
// its command runs; it prints the container's id. vc start runs it.
func createCmd(ctx context.Context, g *globals, args []string) error {
	return runOrCreate(ctx, g, "create", args)
}
