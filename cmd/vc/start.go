package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"

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
// aside with a copy of its record, its sandbox is removed, and a new owner
// creates it again from the options it was run with, moving them back.
// With create, the new container is left created (for an attachment
// before it starts). If the new run fails, for whatever reason, the
// container is put back as it was: stopped, with its record, what it
// wrote and its log, to be started again once the cause is gone.
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
		os.RemoveAll(carry)
		return fmt.Errorf("container %s: remove the stopped VM: %w", id, err)
	}
	o.Carry, o.Detach, o.Create, o.Debug = carry, true, create, g.debug
	if err := spawnOwner(ctx, g, o); err != nil {
		// The owner has undone what it made (it reports once it has),
		// and moved what the container wrote back to carry.
		if rerr := restoreStopped(g, id, carry); rerr != nil {
			return fmt.Errorf("container %s: %w (and putting it back: %v; what it wrote is in %s)", id, err, rerr, carry)
		}
		return fmt.Errorf("container %s: %w", id, err)
	}
	// What is left is the old record's copy.
	if err := os.RemoveAll(carry); err != nil {
		slog.Warn("restart: carry directory left", "dir", carry, "err", err)
	}
	return nil
}

// carried are what a container's next run keeps: its writable layer's
// upper directory and its log.
var carried = []string{"layer/upper", "container.log", "container.log.1"}

// carryState is the directory of a carry directory that holds a copy of
// the stopped sandbox's record (its state files and run options), to put
// it back if the next run fails.
const carryState = "state"

// carryOut moves what a stopped container keeps into a directory of its
// own under the state root, with a copy of its record, and returns it.
// Failing halfway, it moves back what it moved.
func carryOut(g *globals, id string) (string, error) {
	dir, err := os.MkdirTemp(g.stateRoot, "."+id+".carry-")
	if err != nil {
		return "", err
	}
	sandbox := filepath.Join(g.stateRoot, id)
	if err := copyRecord(sandbox, filepath.Join(dir, carryState)); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("container %s: keep its record: %w", id, err)
	}
	if err := moveCarried(sandbox, dir); err != nil {
		if cerr := carryIn(dir, sandbox); cerr != nil {
			return "", fmt.Errorf("container %s: %w (and moving back: %v; what was moved is in %s)", id, err, cerr, dir)
		}
		os.RemoveAll(dir)
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	return dir, nil
}

// copyRecord copies the regular files of sandbox directory dir (its
// state, run options and logs; not its lock, nor what carried moves) to
// the new directory to.
func copyRecord(dir, to string) error {
	if err := os.Mkdir(to, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == "lock" || slices.Contains(carried, e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// moveCarried moves what a container keeps from sandbox directory dir
// into carry.
func moveCarried(dir, carry string) error {
	for _, name := range carried {
		src := filepath.Join(dir, name)
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(carry, name)
		err := os.MkdirAll(filepath.Dir(dst), 0o700)
		if err == nil {
			err = os.Rename(src, dst)
		}
		if err != nil {
			return fmt.Errorf("keep %s: %w", name, err)
		}
	}
	return nil
}

// carryIn moves what carryOut kept into the new sandbox's directory. The
// carry directory stays (with the old record's copy) until the run it is
// for has succeeded.
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
	return nil
}

// restoreStopped puts stopped container id back from carry after a failed
// run again: its sandbox directory with its record, what it wrote and its
// log; then carry goes.
func restoreStopped(g *globals, id, carry string) error {
	st, err := persist.New(g.stateRoot)
	if err != nil {
		return err
	}
	if err := st.Create(id); err != nil {
		// (A sandbox of that name again: not ours to replace.)
		return err
	}
	dir := st.Dir(id)
	state := filepath.Join(carry, carryState)
	ents, err := os.ReadDir(state)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.Rename(filepath.Join(state, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("restore %s: %w", e.Name(), err)
		}
	}
	if err := carryIn(carry, dir); err != nil {
		return err
	}
	return os.RemoveAll(carry)
}

// carriedOptions are the records of the stopped containers a start or
// restart has carried out of their sandbox and not yet put back: they
// still use their image and volumes.
func carriedOptions(g *globals) ([]runOptions, error) {
	paths, err := filepath.Glob(filepath.Join(g.stateRoot, ".*.carry-*", carryState, optionsFile))
	if err != nil {
		return nil, err
	}
	var out []runOptions
	for _, p := range paths {
		var r containerRecord
		b, err := os.ReadFile(p)
		if err == nil {
			r, err = parseRecord(b)
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // put back or removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, r.options())
	}
	return out, nil
}
