package main

import (
	"context"
	"flag"
	"fmt"
	"os"
)

func init() {
	register("help", command{usage: "[COMMAND]", short: "describe vc, or a command and its flags", run: helpCmd})
}

func helpCmd(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		usage(os.Stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok || c.short == "" {
		return fmt.Errorf("COMMAND %q: no such command (vc help lists them)", args[0])
	}
	helpArgs = []string{"--help"}
	if err := c.run(ctx, g, []string{"--help"}); err != nil && err != flag.ErrHelp {
		return err
	}
	return nil
}
