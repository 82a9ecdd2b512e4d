package main

import (
	"context"
	"errors"
)

func init() {
	register("checkpoint", command{usage: "ID", short: "not supported: containers in VMs cannot be checkpointed", run: unsupported("checkpoint")})
	register("restore", command{usage: "ID", short: "not supported: containers in VMs cannot be restored", run: unsupported("restore")})
}

// errUnsupported is the answer of commands a container in a VM cannot do.
var errUnsupported = errors.New("not supported by vc-runtime (the container runs in a VM)")

func unsupported(name string) func(context.Context, *globals, []string) error {
	return func(context.Context, *globals, []string) error {
		return errors.New(name + ": " + errUnsupported.Error())
	}
}
