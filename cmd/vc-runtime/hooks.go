package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hooks. runc runs a spec's prestart and createRuntime hooks on the host,
// once the container's namespaces exist and before its process starts.
// docker relies on one: libnetwork-setkey moves the container's network
// (a veth, its addresses and routes) into the container's network
// namespace, which it finds as /proc/<state.pid>/ns/net.
//
// Here the container's namespaces are in the VM, and the VM joins a
// network namespace of the host. A spec that asks for a new network
// namespace (no path) and has such hooks gets one made on the host,
// pinned by a bind mount at <container dir>/netns; its hooks run with
// state.pid a thread in that namespace (Kata does the same), and the VM
// then mirrors what they put there. Otherwise they run with state.pid the
// owner's. poststart hooks run on the host once start has released the
// container's process, and poststop hooks once delete has removed the
// container, both with the state runc gives them; as the runtime spec
// says, a failing one is logged and the lifecycle goes on.
// createContainer and startContainer hooks, which run in the container's
// namespaces (in the VM, where host programs are not), are not run.

// netnsFile pins the network namespace made for the hooks, in the
// container's directory.
const netnsFile = "netns"

// createHooks are the hooks runc runs in the runtime's namespaces at
// create, in its order.
func createHooks(spec *specs.Spec) []specs.Hook {
	if spec.Hooks == nil {
		return nil
	}
	// Prestart is deprecated in the spec, and what docker 20.10 uses.
	return append(append([]specs.Hook(nil), spec.Hooks.Prestart...), spec.Hooks.CreateRuntime...)
}

// ignoredHooks counts the hooks that are not run.
func ignoredHooks(spec *specs.Spec) int {
	if h := spec.Hooks; h != nil {
		return len(h.CreateContainer) + len(h.StartContainer)
	}
	return 0
}

// newNetNS reports whether the spec asks for a new network namespace.
func newNetNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// runHooks runs hooks in order with state on their stdin, as runc does;
// the first to fail ends it.
func runHooks(ctx context.Context, hooks []specs.Hook, state specs.State) error {
	b, err := json.Marshal(state)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		if err := runHook(ctx, h, b); err != nil {
			return fmt.Errorf("error running hook #%d: %w", i, err)
		}
	}
	return nil
}

// runLateHooks runs poststart or poststop hooks: each is run, and one
// that fails is logged (runtime spec: "the runtime MUST log a warning,
// but the remaining hooks and lifecycle continue").
func runLateHooks(ctx context.Context, log *slog.Logger, kind string, hooks []specs.Hook, state specs.State) {
	b, err := json.Marshal(state)
	if err != nil {
		log.Warn("hook state", "err", err)
		return
	}
	for i, h := range hooks {
		if err := runHook(ctx, h, b); err != nil {
			log.Warn("a "+kind+" hook failed", "hook", i, "err", err)
		}
	}
}

func runHook(ctx context.Context, h specs.Hook, state []byte) error {
	if h.Timeout != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("%s: %w, stdout and stderr: %q", h.Path, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
