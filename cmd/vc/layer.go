package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// containerLayer gives a container a writable layer of its own over its
// image: an overlay whose lower directories are the image's (its layers,
// top first, or one root filesystem), shared by every container of it and
// never written, and whose upper and work directories are in the
// sandbox's state directory dir. What the container writes (files, the
// mount points of -v, -w and resolv.conf) lands there and goes with the
// sandbox: removing a sandbox unmounts and removes everything under its
// directory. It returns the merged root.
func containerLayer(dir string, lowers []string) (string, error) {
	layer := filepath.Join(dir, "layer")
	upper, work, root := filepath.Join(layer, "upper"), filepath.Join(layer, "work"), filepath.Join(layer, "rootfs")
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("container layer: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	if len(opts) >= unix.Getpagesize() {
		// The options must fit in a page: many layers go through short
		// links of the sandbox's (the image store sees through them).
		short := make([]string, len(lowers))
		for i, l := range lowers {
			short[i] = filepath.Join(layer, "l", strconv.Itoa(i))
			if err := os.MkdirAll(filepath.Dir(short[i]), 0o755); err != nil {
				return "", fmt.Errorf("container layer: %w", err)
			}
			if err := os.Symlink(l, short[i]); err != nil {
				return "", fmt.Errorf("container layer: %w", err)
			}
		}
		opts = fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(short, ":"), upper, work)
		if len(opts) >= unix.Getpagesize() {
			return "", fmt.Errorf("container layer: %d layers: the overlay's options are %d bytes, over a page", len(lowers), len(opts))
		}
	}
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("container layer: mount overlay on %s (%s): %w", root, opts, err)
	}
	return root, nil
}
