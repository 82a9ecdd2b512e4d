package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("logs", command{usage: "[-f] [--tail N] [-t] CONTAINER", short: "print a container's output (stdout to stdout, stderr to stderr)", run: logsCmd})
}

func logsCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("logs", commands["logs"].usage)
	follow := fs.Bool("f", false, "keep printing new output until the container stops")
	fs.BoolVar(follow, "follow", false, "the same as -f")
	tail := fs.String("tail", "all", "print only the last N lines")
	stamps := fs.Bool("t", false, "prefix each line with its time (RFC 3339)")
	fs.BoolVar(stamps, "timestamps", false, "the same as -t")
	if err := fs.Parse(expandShort(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("CONTAINER: want exactly one")
	}
	id, err := resolveContainer(ctx, g, fs.Arg(0))
	if err != nil {
		return err
	}
	if err := persist.ValidateID("container", id); err != nil {
		return err
	}
	last := -1
	if *tail != "all" {
		n, err := strconv.Atoi(*tail)
		if err != nil || n < 0 {
			return fmt.Errorf("--tail %q: want a number of lines or all: %w", *tail, errdefs.ErrInvalidArgument)
		}
		last = n
	}
	print := func(r logRecord) {
		w := os.Stdout
		if r.Stream == "stderr" {
			w = os.Stderr
		}
		if *stamps && !r.Time.IsZero() {
			fmt.Fprint(w, r.Time.Format(time.RFC3339Nano)+" ")
		}
		io.WriteString(w, r.Log)
	}
	path := filepath.Join(g.stateRoot, id, "container.log")
	var recs []logRecord
	collect := func(r logRecord) { recs = append(recs, r) }
	if f, err := os.Open(path + ".1"); err == nil {
		readLog(f, collect)
		f.Close()
	}
	f, err := os.Open(path)
	if err != nil {
		if _, serr := vc.StatusSandbox(ctx, g.stateRoot, id); serr != nil {
			return serr
		}
		return fmt.Errorf("container %s: no logs: %w", id, err)
	}
	defer f.Close()
	if err := readLog(f, collect); err != nil {
		return err
	}
	if last >= 0 && len(recs) > last {
		recs = recs[len(recs)-last:]
	}
	for _, r := range recs {
		print(r)
	}
	if !*follow {
		return nil
	}
	return followLog(ctx, g, id, f, print)
}

// followLog prints what is added to the log f (read to its end) until
// the container has stopped and nothing more comes; it follows the log
// across a rotation.
func followLog(ctx context.Context, g *globals, id string, f *os.File, print func(logRecord)) error {
	path := f.Name()
	defer func() { f.Close() }() // the one followed last
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var partial []byte
	for {
		stopped := containerStopped(ctx, g, id)
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		if len(b) > 0 {
			partial = append(partial, b...)
			i := len(partial)
			for i > 0 && partial[i-1] != '\n' {
				i--
			}
			readLog(bytes.NewReader(partial[:i]), print)
			partial = append([]byte(nil), partial[i:]...)
		} else if rotated(f, path) {
			nf, err := os.Open(path)
			if err == nil {
				f.Close()
				f = nf
				continue
			}
		} else if stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// rotated tells whether path is no longer the file f reads.
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	if err1 != nil || err2 != nil {
		return false
	}
	sa, ok1 := a.Sys().(*syscall.Stat_t)
	sb, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && sa.Ino != sb.Ino
}

// containerStopped tells whether the container is stopped (or gone).
func containerStopped(ctx context.Context, g *globals, id string) bool {
	cs, err := vc.ContainerStatuses(ctx, g.stateRoot, id)
	if err != nil {
		return errors.Is(err, errdefs.ErrNotFound)
	}
	for _, c := range cs {
		if c.ID == id {
			return c.State == vc.StateStopped
		}
	}
	return true
}
