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
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/pkg/vc"
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
	go func() { pw.CloseWithError(tarHost(pw, src, name, keepOwners)) }()
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
		err := untarHost(pr, root, name, false)
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
	streamCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	streams := c.IOStream(streamCtx, execID, vc.IO{Stdin: stdin, Stdout: stdout, Stderr: stderr})
	if stdin == nil {
		c.CloseStdin(ctx, execID)
	}
	code, err := c.WaitProcess(ctx, execID)
	if err != nil {
		return code, err
	}
	select {
	case <-streams:
	case <-time.After(5 * time.Second):
	}
	return code, nil
}

// stoppedFiles is the host directory of stopped container id's files: its
// --rootfs directory, or the overlay of its writable layer over its image
// (mounted again where it was, should it be gone: rm unmounts it), where
// what is written lands in the writable layer its next run keeps.
func stoppedFiles(g *globals, id string) (string, error) {
	o, err := savedOptions(g, id)
	if err != nil {
		return "", err
	}
	if o.Rootfs != "" {
		return o.Rootfs, nil
	}
	dir := filepath.Join(g.stateRoot, id)
	root := filepath.Join(dir, "layer", "rootfs")
	infos, err := mountinfo.Read("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	if _, ok := mountinfo.Lookup(infos, root); ok {
		return root, nil
	}
	src, err := resolveImage(g, o)
	if err != nil {
		return "", fmt.Errorf("container %s: its image: %w", id, err)
	}
	return mountRootfs(dir, src)
}

// stoppedTarget reaches a stopped container's files on the host, in root.
// Every path resolves as in the container (a link to /x is root's /x,
// pathrs.OpenInRoot) and what is read or written below it stays in it
// (os.Root): no link the container made leads out.
type stoppedTarget struct{ root string }

func (t stoppedTarget) stat(_ context.Context, p string) (exists, isDir bool, err error) {
	f, err := pathrs.OpenInRoot(t.root, p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, false, fmt.Errorf("%s: %w", p, err)
	}
	return true, fi.IsDir(), nil
}

// openDir opens directory p of the container as an os.Root.
func (t stoppedTarget) openDir(p string) (*os.Root, error) {
	f, err := pathrs.OpenInRoot(t.root, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	// The handle's directory, whatever its path: the magic link is the
	// handle's, not a path resolved again.
	r, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

func (t stoppedTarget) unpack(_ context.Context, r io.Reader, dir string) error {
	root, err := t.openDir(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return untarHost(r, root, "", true)
}

func (t stoppedTarget) pack(_ context.Context, w io.Writer, src string) error {
	root, err := t.openDir(path.Dir(src))
	if err != nil {
		return err
	}
	defer root.Close()
	return tarRoot(w, root, path.Base(src), path.Base(src), true)
}

func (t stoppedTarget) close() {}

// tarHost writes host path src as a tar stream whose top entry is name.
func tarHost(w io.Writer, src, name string, keepOwners bool) error {
	src = filepath.Clean(src)
	root, err := os.OpenRoot(filepath.Dir(src))
	if err != nil {
		return err
	}
	defer root.Close()
	return tarRoot(w, root, filepath.Base(src), name, keepOwners)
}

// tarRoot writes src, a name in root, as a tar stream whose top entry is
// name. Links are copied as links, never followed (src's own too, as
// docker cp copies it).
func tarRoot(w io.Writer, root *os.Root, src, name string, keepOwners bool) error {
	tw := tar.NewWriter(w)
	add := func(p string) (isDir bool, err error) {
		fi, err := root.Lstat(p)
		if err != nil {
			return false, err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = root.Readlink(p); err != nil {
				return false, err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return false, fmt.Errorf("%s: %w", p, err)
		}
		rel := p
		if src != "." {
			rel = strings.TrimPrefix(strings.TrimPrefix(p, src), "/")
		}
		h.Name = path.Join(name, rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		if !keepOwners {
			h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		}
		if err := tw.WriteHeader(h); err != nil {
			return false, err
		}
		if !fi.Mode().IsRegular() {
			return fi.IsDir(), nil
		}
		f, err := root.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return false, err
		}
		defer f.Close()
		_, err = io.CopyN(tw, f, h.Size)
		return false, err
	}
	isDir, err := add(src)
	if err == nil && isDir {
		err = fs.WalkDir(root.FS(), src, func(p string, d fs.DirEntry, err error) error {
			if err != nil || p == src {
				return err
			}
			_, err = add(p)
			return err
		})
	}
	if err != nil {
		return err
	}
	return tw.Close()
}

// untarHost unpacks a tar stream into root; with rename, the stream's top
// entry takes that name; with chown, what it makes gets the stream's
// owners (into a container; on the host, they are the caller's). Every
// path stays in root: os.Root refuses one that climbs out, by .. or by a
// link the stream made.
func untarHost(r io.Reader, root *os.Root, rename string, chown bool) error {
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
		if chown {
			if err := root.Lchown(name, h.Uid, h.Gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if !h.ModTime.IsZero() && h.Typeflag != tar.TypeSymlink {
			root.Chtimes(name, h.AccessTime, h.ModTime)
		}
	}
}
