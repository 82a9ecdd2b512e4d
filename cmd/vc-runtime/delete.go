package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mount"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("delete", command{usage: "[--force] ID", short: "delete a container and everything it holds", run: deleteCmd})
}

func deleteCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("delete")
	force := fs.Bool("force", false, "forcibly delete the container if it is still running (uses SIGKILL)")
	fs.BoolVar(force, "f", false, "forcibly delete the container if it is still running (uses SIGKILL)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "delete")
	if err != nil {
		return err
	}
	st, err := loadState(g.root, id)
	if errors.Is(err, errNotExist) && *force {
		// runc: delete --force of a container that is not there is no
		// error; what a half-made one left is removed.
		if validateID(id) == nil {
			removeLeftovers(ctx, g.root, id)
		}
		return nil
	}
	if err != nil {
		return err
	}
	switch s := st.status(); s {
	case statusStopped, statusCreated:
	case statusCreating:
		if !*force {
			return fmt.Errorf("cannot delete container %s that is being created", id)
		}
	default:
		if !*force {
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, s)
		}
	}
	return destroy(ctx, g.root, st)
}

// destroy kills what of container st still runs, waits for its owner to
// tear the VM down, and removes the container's directory.
func destroy(ctx context.Context, root string, st *containerState) error {
	if st.ownerRunning() {
		if st.Status == statusPaused {
			ownerRequest(root, st.ID, request{Op: "resume"})
		}
		ownerRequest(root, st.ID, request{Op: "kill", Signal: int(unix.SIGKILL), All: true})
		if !waitGone(st, 30*time.Second) {
			// The owner does not answer: QEMU dies with it.
			unix.Kill(st.OwnerPid, unix.SIGKILL)
			waitGone(st, 5*time.Second)
		}
	}
	// A pod container whose owner died is still in the VM it joined.
	if err := removeMember(root, st); err != nil {
		slog.Warn("remove the container from its pod's VM", "container", st.ID, "vm_container", st.Sandbox, "err", err)
	}
	removeLeftovers(ctx, root, st.ID)
	if _, err := os.Stat(containerDir(root, st.ID)); err == nil {
		return fmt.Errorf("container %s: could not remove %s", st.ID, containerDir(root, st.ID))
	}
	poststop(ctx, st)
	return nil
}

// poststop runs the spec's poststop hooks of a deleted container.
func poststop(ctx context.Context, st *containerState) {
	spec, err := loadSpec(st.Bundle)
	if err != nil {
		slog.Warn("poststop hooks: the bundle's spec", "container", st.ID, "err", err)
		return
	}
	if spec.Hooks == nil || len(spec.Hooks.Poststop) == 0 {
		return
	}
	state := specs.State{Version: specs.Version, ID: st.ID, Status: specs.StateStopped, Bundle: st.Bundle, Annotations: spec.Annotations}
	runLateHooks(ctx, slog.With("container", st.ID), "poststop", spec.Hooks.Poststop, state)
}

// waitGone waits until st's owner has exited.
func waitGone(st *containerState, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for st.ownerRunning() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// removeLeftovers removes container id's directory and what a dead owner
// left of its VM (the library stops a VM whose owner is gone).
func removeLeftovers(ctx context.Context, root, id string) {
	dir := containerDir(root, id)
	if _, err := os.Stat(filepath.Join(dir, sandboxID)); err == nil {
		vc.StopSandbox(ctx, dir, sandboxID, 5*time.Second)
		vc.DeleteSandbox(ctx, dir, sandboxID)
	}
	// A dead owner's network namespace is a mount.
	if err := mount.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "container %s: %v\n", id, err)
	}
}

// stopLeftovers kills container id's owner, which was told nothing yet,
// and removes what it made.
func stopLeftovers(ctx context.Context, root, id string) {
	if st, err := loadState(root, id); err == nil {
		destroy(ctx, root, st)
		return
	}
	removeLeftovers(ctx, root, id)
}
