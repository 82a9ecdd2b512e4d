package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("start", command{
		usage: "[-a] [-i] CONTAINER...",
		short: "start created containers, or run stopped ones again (in a new VM, with what they wrote)",
		run:   startCmd,
	})
}

func startCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("start", commands["start"].usage)
	attach := fs.Bool("a", false, "attach to the container's output and exit with its code")
	fs.BoolVar(attach, "attach", false, "the same as -a")
	interactive := fs.Bool("i", false, "attach the terminal's input too")
	fs.BoolVar(interactive, "interactive", false, "the same as -i")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	if fs.NArg() == 0 || ((*attach || *interactive) && fs.NArg() > 1) {
		fs.Usage()
		return fmt.Errorf("CONTAINER: want one or more (exactly one with -a or -i)")
	}
	ids, err := resolveContainers(ctx, g, fs.Args())
	if err != nil {
		return err
	}
	if !*attach && !*interactive {
		for _, id := range ids {
			if err := startOne(ctx, g, id, nil); err != nil {
				return err
			}
			fmt.Println(id)
		}
		return nil
	}
	id := ids[0]
	var conn net.Conn
	connect := func() (err error) {
		// Attached before it starts: nothing of its output is missed.
		conn, err = dialAttach(ctx, g, id)
		return err
	}
	if err := startOne(ctx, g, id, connect); err != nil {
		if conn != nil {
			conn.Close()
		}
		return err
	}
	return attached(ctx, g, id, conn, *interactive, true)
}

// startOne starts a created container, or runs a stopped one again in a
// new VM (its writable layer and log kept, as docker start keeps them).
// before, when given, runs once the container exists and before its
// command does (to attach); its error ends startOne.
func startOne(ctx context.Context, g *globals, id string, before func() error) error {
	if err := persist.ValidateID("container", id); err != nil {
		return err
	}
	st, err := containerState(ctx, g, id)
	if err != nil {
		return err
	}
	switch st {
	case vc.StateCreated:
	case vc.StateStopped:
		if err := rerun(ctx, g, id, before != nil); err != nil {
			return err
		}
		if before == nil {
			return nil
		}
	default:
		// As docker: starting a running container is no error, and
		// start -a attaches to it.
		if before != nil {
			return before()
		}
		return nil
	}
	if before != nil {
		if err := before(); err != nil {
			return err
		}
	}
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Container(id).Start(ctx); err != nil {
		return startError(fmt.Errorf("container %s: %w", id, err))
	}
	return nil
}

// containerState is the state of container id, the sandbox's when the
// container has no record (a VM that failed before creating it).
func containerState(ctx context.Context, g *globals, id string) (vc.State, error) {
	sb, err := vc.StatusSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return "", err
	}
	if sb.State == vc.StateStopped {
		return vc.StateStopped, nil
	}
	cs, err := vc.ContainerStatuses(ctx, g.stateRoot, id)
	if err != nil {
		return "", err
	}
	for _, c := range cs {
		if c.ID == id {
			return c.State, nil
		}
	}
	return sb.State, nil
}

// rerun runs stopped container id again: what it wrote and its log move
// aside, its sandbox is removed, and a new owner creates it again from
// the options it was run with, moving them back. With create, the new
// container is left created (for an attachment before it starts).
func rerun(ctx context.Context, g *globals, id string, create bool) error {
	o, err := savedOptions(g, id)
	if err != nil {
		return err
	}
	carry, err := carryOut(g, id)
	if err != nil {
		return err
	}
	if err := vc.DeleteSandbox(ctx, g.stateRoot, id); err != nil {
		// Still there: what it wrote goes back to it.
		if cerr := carryIn(carry, filepath.Join(g.stateRoot, id)); cerr != nil {
			return fmt.Errorf("container %s: remove the stopped VM: %w (what it wrote is in %s)", id, err, carry)
		}
		return fmt.Errorf("container %s: remove the stopped VM: %w", id, err)
	}
	o.Carry, o.Detach, o.Create, o.Debug = carry, true, create, g.debug
	if err := spawnOwner(ctx, g, o); err != nil {
		if _, serr := os.Stat(carry); serr == nil {
			return fmt.Errorf("container %s: %w (what it wrote is in %s)", id, err, carry)
		}
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}

// optionsFile keeps, in the sandbox's state directory, the options a
// container was run with, for vc start and vc restart to run it again.
const optionsFile = "run.json"

func saveOptions(dir string, o runOptions) error {
	o.Carry, o.Create, o.Detach = "", false, false
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, optionsFile), b, 0o600); err != nil {
		return fmt.Errorf("save run options: %w", err)
	}
	return nil
}

func savedOptions(g *globals, id string) (runOptions, error) {
	var o runOptions
	b, err := os.ReadFile(filepath.Join(g.stateRoot, id, optionsFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := vc.StatusSandbox(context.Background(), g.stateRoot, id); serr != nil {
			return o, serr
		}
		return o, fmt.Errorf("container %s: not one vc run or vc create made: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("container %s: %s: %w", id, optionsFile, err)
	}
	return o, nil
}

// carried are what a container's next run keeps: its writable layer's
// upper directory and its log.
var carried = []string{"layer/upper", "container.log", "container.log.1"}

// carryOut moves what a stopped container keeps into a directory of its
// own under the state root and returns it. Failing halfway, it moves back
// what it moved.
func carryOut(g *globals, id string) (string, error) {
	dir, err := os.MkdirTemp(g.stateRoot, "."+id+".carry-")
	if err != nil {
		return "", err
	}
	sandbox := filepath.Join(g.stateRoot, id)
	for _, name := range carried {
		src := filepath.Join(sandbox, name)
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(dir, name)
		err := os.MkdirAll(filepath.Dir(dst), 0o700)
		if err == nil {
			err = os.Rename(src, dst)
		}
		if err != nil {
			if cerr := carryIn(dir, sandbox); cerr != nil {
				return "", fmt.Errorf("container %s: keep %s: %w (and moving back: %v; what was moved is in %s)", id, name, err, cerr, dir)
			}
			return "", fmt.Errorf("container %s: keep %s: %w", id, name, err)
		}
	}
	return dir, nil
}

// carryIn moves what carryOut kept into the new sandbox's directory and
// removes the carry directory.
func carryIn(carry, dir string) error {
	for _, name := range carried {
		src := filepath.Join(carry, name)
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("restore %s: %w", name, err)
		}
	}
	return os.RemoveAll(carry)
}
