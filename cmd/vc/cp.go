package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("cp", command{
		usage: "[-a] CONTAINER:SRC DEST | [-a] SRC CONTAINER:DEST  (SRC or DEST - is a tar stream)",
		short: "copy files between a running container and the host",
		run:   cpCmd,
	})
}

// vc cp copies as docker cp does (DEST an existing directory: SRC goes in
// it; otherwise SRC is copied as DEST), through tar: the container's own
// tar (busybox's and GNU tar both do) packs or unpacks inside the guest,
// and the host side never follows a path the container wrote out of the
// destination (os.Root). Files land owned by root in the container unless
// -a keeps the host's owners, and by the caller on the host.
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
	c, err := cpContainer(ctx, g, id)
	if err != nil {
		return err
	}
	defer c.Sandbox().Close()
	dst = path.Clean(dst)
	if src == "-" {
		// A tar stream goes into a directory, as docker's.
		return inContainer(ctx, c, os.Stdin, nil, "tar", "-x", "-f", "-", "-C", dst)
	}
	if _, err := os.Lstat(src); err != nil {
		return fmt.Errorf("SRC %q: %w", src, err)
	}
	dir, name := dst, filepath.Base(filepath.Clean(src))
	if err := inContainer(ctx, c, nil, nil, "test", "-d", dst); err != nil {
		// Not a directory: SRC is copied as DEST, in DEST's parent.
		dir, name = path.Dir(dst), path.Base(dst)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarHost(pw, src, name, keepOwners)) }()
	defer pr.Close()
	return inContainer(ctx, c, pr, nil, "tar", "-x", "-f", "-", "-C", dir)
}

// copyOut copies src of container id to host path dst (or stdout as a
// tar stream for -).
func copyOut(ctx context.Context, g *globals, id, src, dst string) error {
	if !path.IsAbs(src) {
		return fmt.Errorf("SRC %q: want an absolute path in the container: %w", src, errdefs.ErrInvalidArgument)
	}
	c, err := cpContainer(ctx, g, id)
	if err != nil {
		return err
	}
	defer c.Sandbox().Close()
	src = path.Clean(src)
	if src == "/" {
		return fmt.Errorf("SRC %q: copy the directories under it instead: %w", src, errdefs.ErrInvalidArgument)
	}
	pack := []string{"tar", "-c", "-f", "-", "-C", path.Dir(src), path.Base(src)}
	if dst == "-" {
		return inContainer(ctx, c, nil, os.Stdout, pack...)
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
		err := untarHost(pr, root, name)
		pr.CloseWithError(err)
		done <- err
	}()
	err = inContainer(ctx, c, nil, pw, pack...)
	pw.CloseWithError(err)
	if uerr := <-done; err == nil && uerr != nil {
		return fmt.Errorf("DEST %q: %w", dst, uerr)
	}
	return err
}

// cpContainer is running container id.
func cpContainer(ctx context.Context, g *globals, id string) (*vc.Container, error) {
	s, err := vc.FetchSandbox(ctx, g.stateRoot, id)
	if err != nil {
		return nil, err
	}
	st, err := s.Container(id).Status(ctx)
	if err == nil && st.State != vc.StateRunning {
		err = fmt.Errorf("container %s is %s: vc cp needs it running: %w", id, st.State, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s.Container(id), nil
}

// inContainer runs args in the container as root, with stdin and stdout
// as given, and fails with its stderr unless it exits 0.
func inContainer(ctx context.Context, c *vc.Container, stdin io.Reader, stdout io.Writer, args ...string) error {
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	p := execProcess(st.Config.Spec, args, nil, "/", false)
	p.User.UID, p.User.GID, p.User.AdditionalGids = 0, 0, nil
	execID := "cp-" + randomID()
	if err := c.Exec(ctx, execID, p); err != nil {
		return fmt.Errorf("%s in container %s: %w", args[0], c.ID(), err)
	}
	var stderr bytes.Buffer
	if stdout == nil {
		stdout = io.Discard
	}
	streamCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	streams := c.IOStream(streamCtx, execID, vc.IO{Stdin: stdin, Stdout: stdout, Stderr: &stderr})
	if stdin == nil {
		c.CloseStdin(ctx, execID)
	}
	code, err := c.WaitProcess(ctx, execID)
	if err != nil {
		return err
	}
	select {
	case <-streams:
	case <-time.After(5 * time.Second):
	}
	switch {
	case code == 127:
		return fmt.Errorf("container %s has no %s (vc cp needs the container's tar)", c.ID(), args[0])
	case code != 0:
		return fmt.Errorf("%s in container %s: exit %d: %s", strings.Join(args, " "), c.ID(), code, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tarHost writes host path src as a tar stream whose top entry is name.
func tarHost(w io.Writer, src, name string, keepOwners bool) error {
	tw := tar.NewWriter(w)
	src = filepath.Clean(src)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(src, p)
		h.Name = filepath.ToSlash(filepath.Join(name, rel))
		if fi.IsDir() {
			h.Name += "/"
		}
		if !keepOwners {
			h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// untarHost unpacks a tar stream into root; with rename, the stream's top
// entry takes that name. Every path stays in root: os.Root refuses one
// that climbs out, by .. or by a link the stream made.
func untarHost(r io.Reader, root *os.Root, rename string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if rename != "" {
			_, rest, _ := strings.Cut(name, "/")
			name = path.Join(rename, rest)
		}
		if name == "" || name == "." {
			continue
		}
		mode := fs.FileMode(h.Mode).Perm()
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode); err != nil {
				return err
			}
			root.Chmod(name, mode)
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			root.Chmod(name, mode)
		case tar.TypeSymlink:
			root.Remove(name)
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		case tar.TypeLink:
			link := strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
			if rename != "" {
				_, rest, _ := strings.Cut(link, "/")
				link = path.Join(rename, rest)
			}
			root.Remove(name)
			if err := root.Link(link, name); err != nil {
				return err
			}
		default:
			// Devices and FIFOs are not copied out, as docker cp skips
			// what it cannot recreate unprivileged.
		}
		if !h.ModTime.IsZero() && h.Typeflag != tar.TypeSymlink {
			root.Chtimes(name, h.AccessTime, h.ModTime)
		}
	}
}
