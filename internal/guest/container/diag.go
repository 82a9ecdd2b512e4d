package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

const (
	// TerminationMessagePathAnnotation names the file a Kubernetes
	// container writes its termination message to.
	TerminationMessagePathAnnotation = "io.kubernetes.container.terminationMessagePath"
	// DefaultTerminationMessagePath is Kubernetes' default for it.
	DefaultTerminationMessagePath = "/dev/termination-log"
	// maxTerminationLog bounds what is returned (the kubelet keeps 4 KiB).
	maxTerminationLog = 64 << 10
)

// TerminationLog returns the container's termination message: the file
// the annotation names (or /dev/termination-log), as the container sees
// it. When the path lies under a bind mount of the spec, it is read from
// the mount's source, otherwise from the rootfs; either way it is
// resolved inside that directory, so neither ".." nor symlinks can lead
// out of it.
func (m *Manager) TerminationLog(ctx context.Context, id string) ([]byte, error) {
	c, err := m.get(id)
	if err != nil {
		return nil, err
	}
	p := DefaultTerminationMessagePath
	if v := c.spec.Annotations[TerminationMessagePathAnnotation]; v != "" {
		p = v
	}
	if !path.IsAbs(p) {
		return nil, invalid("annotation "+TerminationMessagePathAnnotation, "%q is not absolute", p)
	}
	// Lexically inside the container first: "/../x" is "/x".
	p = path.Clean(p)
	root, rel := c.spec.Root.Path, p
	best := ""
	for _, mnt := range c.spec.Mounts {
		dst := path.Clean("/" + mnt.Destination)
		if !isBind(mnt.Type, mnt.Options) || len(dst) <= len(best) {
			continue
		}
		if p == dst || strings.HasPrefix(p, strings.TrimSuffix(dst, "/")+"/") {
			best, root, rel = dst, mnt.Source, strings.TrimPrefix(p, dst)
		}
	}
	b, err := readInRoot(root, rel)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container_id %q: termination log %s: %w", id, p, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("container_id %q: termination log %s: %w", id, p, err)
	}
	return b, nil
}

func isBind(typ string, opts []string) bool {
	return typ == "bind" || slices.Contains(opts, "bind") || slices.Contains(opts, "rbind")
}

// readInRoot reads the regular file rel inside root, or root itself when
// rel is empty and root is a file (a file bind mount).
func readInRoot(root, rel string) ([]byte, error) {
	var h *os.File
	var err error
	if rel == "" || rel == "/" {
		h, err = os.OpenFile(root, unix.O_PATH|unix.O_CLOEXEC, 0)
	} else {
		h, err = pathrs.OpenInRoot(root, rel)
	}
	if err != nil {
		return nil, err
	}
	defer h.Close()
	fi, err := h.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file: %w", errdefs.ErrInvalidArgument)
	}
	f, err := pathrs.Reopen(h, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxTerminationLog))
}
