package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/virtcontainers/vc/internal/tarcopy"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

func init() {
	register("cp", command{
		usage: "[-a] CONTAINER:SRC DEST | [-a] SRC CONTAINER:DEST  (SRC or DEST - is a tar stream)",
		short: "copy files between a container (created, running or stopped) and the host",
		run:   cpCmd,
	})
}

// vc cp copies as docker cp does (DEST an existing directory: SRC goes in
// it; otherwise SRC is copied as DEST, in a parent that must exist; DEST
// ending in / must be an existing directory). Into a running container it
// goes through tar: the container's own tar (busybox's and GNU tar both
// do) packs or unpacks inside the guest; a stopped container's files are
// reached on the host. The host side never follows a path the container
// wrote out of the destination (os.Root). Files land owned by root in the
// container unless -a keeps the host's owners, and by the caller on the
// host.
func cpCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("cp", commands["cp"].usage)
	archive := fs.Bool("a", false, "keep the files' owners (host to container)")
	fs.BoolVar(archive, "archive", false, "the same as -a")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("SRC and DEST: want exactly two")
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	sid, spath, sIn := splitContainerPath(src)
	did, dpath, dIn := splitContainerPath(dst)
	var err error
	if sid, err = resolveContainer(ctx, g, sid); err != nil {
		return err
	}
	if did, err = resolveContainer(ctx, g, did); err != nil {
		return err
	}
	switch {
	case sIn && dIn:
		return fmt.Errorf("SRC %q and DEST %q: copying between containers is not supported: %w", src, dst, errdefs.ErrInvalidArgument)
	case !sIn && !dIn:
		return fmt.Errorf("SRC %q and DEST %q: one must be CONTAINER:PATH: %w", src, dst, errdefs.ErrInvalidArgument)
	case sIn:
		return copyOut(ctx, g, sid, spath, dst)
	default:
		return copyIn(ctx, g, src, did, dpath, *archive)
	}
}

// splitContainerPath reads CONTAINER:PATH. A path that starts with / or .
// is the host's even with a colon in it, as docker reads it.
func splitContainerPath(s string) (id, p string, ok bool) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return "", s, false
	}
	id, p, ok = strings.Cut(s, ":")
	if !ok || id == "" {
		return "", s, false
	}
	return id, p, true
}

// copyIn copies host path src (or a tar stream on stdin for -) into
// container id at dst.
func copyIn(ctx context.Context, g *globals, src, id, dst string, keepOwners bool) error {
	if !path.IsAbs(dst) {
		return fmt.Errorf("DEST %q: want an absolute path in the container: %w", dst, errdefs.ErrInvalidArgument)
	}
	if src != "-" {
		if _, err := os.Lstat(src); err != nil {
			return fmt.Errorf("SRC %q: %w", src, err)
		}
	}
	t, err := openCpTarget(ctx, g, id)
	if err != nil {
		return err
	}
	defer t.close()
	if src == "-" {
		// A tar stream goes into a directory, as docker's.
		dir := path.Clean(dst)
		exists, isDir, err := t.stat(ctx, dir)
		switch {
		case err != nil:
			return err
		case !exists:
			return fmt.Errorf("DEST %q: could not find the file %s in container %s: %w", dst, dir, id, errdefs.ErrNotFound)
		case !isDir:
			return fmt.Errorf("DEST %q: a tar stream goes into a directory, and %s is not one: %w", dst, dir, errdefs.ErrInvalidArgument)
		}
		return t.unpack(ctx, os.Stdin, dir)
	}
	dir, name, err := cpDest(ctx, id, dst, filepath.Base(filepath.Clean(src)), t.stat)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarcopy.Pack(pw, src, name, keepOwners)) }()
	defer pr.Close()
	return t.unpack(ctx, pr, dir)
}

// statFunc says whether path p exists in a container, and is a directory
// (following links, as the container would).
type statFunc func(ctx context.Context, p string) (exists, isDir bool, err error)

// cpDest is where SRC, whose name is srcName, goes for DEST dst in
// container id, as docker cp decides: into dst if it is a directory,
// otherwise as dst, in its parent, which must be a directory that exists.
// A dst ending in / (or /.) asserts a directory: it must exist.
func cpDest(ctx context.Context, id, dst, srcName string, stat statFunc) (dir, name string, err error) {
	clean := path.Clean(dst)
	exists, isDir, err := stat(ctx, clean)
	if err != nil {
		return "", "", err
	}
	asDir := strings.HasSuffix(dst, "/") || strings.HasSuffix(dst, "/.")
	switch {
	case isDir:
		return clean, srcName, nil
	case asDir && exists:
		return "", "", fmt.Errorf("DEST %q: %s in container %s is not a directory: %w", dst, clean, id, errdefs.ErrInvalidArgument)
	case asDir:
		return "", "", fmt.Errorf("DEST %q: the destination directory must exist: could not find the file %s in container %s: %w", dst, clean, id, errdefs.ErrNotFound)
	}
	dir = path.Dir(clean)
	exists, isDir, err = stat(ctx, dir)
	switch {
	case err != nil:
		return "", "", err
	case !exists:
		return "", "", fmt.Errorf("DEST %q: could not find the file %s in container %s: %w", dst, dir, id, errdefs.ErrNotFound)
	case !isDir:
		return "", "", fmt.Errorf("DEST %q: %s in container %s is not a directory: %w", dst, dir, id, errdefs.ErrInvalidArgument)
	}
	return dir, path.Base(clean), nil
}

// copyOut copies src of container id to host path dst (or stdout as a
// tar stream for -).
func copyOut(ctx context.Context, g *globals, id, src, dst string) error {
	if !path.IsAbs(src) {
		return fmt.Errorf("SRC %q: want an absolute path in the container: %w", src, errdefs.ErrInvalidArgument)
	}
	src = path.Clean(src)
	if src == "/" {
		return fmt.Errorf("SRC %q: copy the directories under it instead: %w", src, errdefs.ErrInvalidArgument)
	}
	t, err := openCpTarget(ctx, g, id)
	if err != nil {
		return err
	}
	defer t.close()
	if exists, _, err := t.stat(ctx, src); err != nil {
		return err
	} else if !exists {
		return fmt.Errorf("SRC %q: could not find the file %s in container %s: %w", src, src, id, errdefs.ErrNotFound)
	}
	if dst == "-" {
		return t.pack(ctx, os.Stdout, src)
	}
	dir, name := dst, ""
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		// Not a directory: SRC is copied as DEST, in DEST's parent.
		dir, name = filepath.Dir(dst), filepath.Base(dst)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("DEST %q: %w", dst, err)
	}
	defer root.Close()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := tarcopy.Unpack(pr, root, name, false)
		pr.CloseWithError(err)
		done <- err
	}()
	err = t.pack(ctx, pw, src)
	pw.CloseWithError(err)
	if uerr := <-done; err == nil && uerr != nil {
		return fmt.Errorf("DEST %q: %w", dst, uerr)
	}
	return err
}

// cpTarget is a container's files as vc cp reaches them: through the
// container's own tar while it runs, on the host while it is stopped.
type cpTarget interface {
	stat(ctx context.Context, p string) (exists, isDir bool, err error)
	// unpack unpacks a tar stream into directory dir.
	unpack(ctx context.Context, r io.Reader, dir string) error
	// pack writes src as a tar stream whose top entry is its name.
	pack(ctx context.Context, w io.Writer, src string) error
	close()
}

// openCpTarget reaches container id's files: a running container's, or a
// created or stopped one's (its writable layer over its image, or its
// --rootfs directory), as docker cp copies into and out of a created or
// stopped container.
func openCpTarget(ctx context.Context, g *globals, id string) (cpTarget, error) {
	st, err := containerState(ctx, g, id)
	if err != nil {
		return nil, err
	}
	switch st {
	case vc.StateRunning:
		s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
		if err != nil {
			return nil, err
		}
		return runningTarget{c: s.Container(id)}, nil
	case vc.StateStopped, vc.StateCreated:
		// A created container's process has not run: its files are the
		// host directory the guest sees them in (over 9p), as a stopped
		// one's are.
		dir, err := stoppedFiles(g, id)
		if err != nil {
			return nil, err
		}
		return stoppedTarget{root: dir}, nil
	}
	return nil, fmt.Errorf("container %s is %s: vc cp needs it created, running or stopped: %w", id, st, errdefs.ErrFailedPrecondition)
}

// runningTarget reaches a running container's files through its tar (and
// test): the container resolves its paths itself.
type runningTarget struct{ c *vc.Container }

func (t runningTarget) stat(ctx context.Context, p string) (exists, isDir bool, err error) {
	code, err := inContainer(ctx, t.c, nil, nil, "test", "-d", p)
	if err != nil || code == 0 {
		return code == 0, code == 0, err
	}
	code, err = inContainer(ctx, t.c, nil, nil, "test", "-e", p)
	return code == 0, false, err
}

func (t runningTarget) unpack(ctx context.Context, r io.Reader, dir string) error {
	return inContainerOK(ctx, t.c, r, nil, "tar", "-x", "-f", "-", "-C", dir)
}

func (t runningTarget) pack(ctx context.Context, w io.Writer, src string) error {
	return inContainerOK(ctx, t.c, nil, w, "tar", "-c", "-f", "-", "-C", path.Dir(src), path.Base(src))
}

func (t runningTarget) close() { t.c.Sandbox().Close() }

// inContainerOK runs args in the container as inContainer does, and fails
// with its stderr unless it exits 0.
func inContainerOK(ctx context.Context, c *vc.Container, stdin io.Reader, stdout io.Writer, args ...string) error {
	var stderr bytes.Buffer
	code, err := inContainerErr(ctx, c, stdin, stdout, &stderr, args...)
	if err == nil && code != 0 {
		err = fmt.Errorf("%s in container %s: exit %d: %s", strings.Join(args, " "), c.ID(), code, strings.TrimSpace(stderr.String()))
	}
	return err
}

// inContainer runs args in the container as root, with stdin and stdout
// as given, and returns its exit code.
func inContainer(ctx context.Context, c *vc.Container, stdin io.Reader, stdout io.Writer, args ...string) (int32, error) {
	return inContainerErr(ctx, c, stdin, stdout, io.Discard, args...)
}

func inContainerErr(ctx context.Context, c *vc.Container, stdin io.Reader, stdout, stderr io.Writer, args ...string) (int32, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return 0, err
	}
	p := execProcess(st.Config.Spec, args, nil, "/", false)
	p.User.UID, p.User.GID, p.User.AdditionalGids = 0, 0, nil
	execID := "cp-" + randomID()
	if err := c.Exec(ctx, execID, p); err != nil {
		if errors.Is(err, vc.ErrCommandNotFound) {
			return 0, fmt.Errorf("container %s has no %s (vc cp runs it in a running container): %w", c.ID(), args[0], err)
		}
		return 0, fmt.Errorf("%s in container %s: %w", args[0], c.ID(), err)
	}
	if stdout == nil {
		stdout = io.Discard
	}
	proc := vcowner.StartProcess(ctx, c, execID, vc.IO{Stdin: stdin, Stdout: stdout, Stderr: stderr}, nil)
	defer proc.Close()
	if stdin == nil {
		proc.CloseStdin(ctx)
	}
	code, err := proc.Wait(ctx, nil)
	if err != nil {
		return code, err
	}
	proc.Drain(vcowner.OutputEndTimeout)
	return code, nil
}
