package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/virtcontainers/vc/internal/tarcopy"

	"github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/mountinfo"
)

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
	return tarcopy.Unpack(r, root, "", true)
}

func (t stoppedTarget) pack(_ context.Context, w io.Writer, src string) error {
	root, err := t.openDir(path.Dir(src))
	if err != nil {
		return err
	}
	defer root.Close()
	return tarcopy.PackRoot(w, root, path.Base(src), path.Base(src), true)
}

func (t stoppedTarget) close() {}
