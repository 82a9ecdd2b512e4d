package main

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// containerLayer gives a container a writable layer of its own over its
// image: an overlay whose lower directory is the image's root filesystem,
// shared by every container of it and never written, and whose upper and
// work directories are in the sandbox's state directory dir. What the
// container writes (files, the mount points of -v, -w and resolv.conf)
// lands there and goes with the sandbox: removing a sandbox unmounts and
// removes everything under its directory. It returns the merged root.
func containerLayer(dir, image string) (string, error) {
	layer := filepath.Join(dir, "layer")
	upper, work, root := filepath.Join(layer, "upper"), filepath.Join(layer, "work"), filepath.Join(layer, "rootfs")
	for _, d := range []string{upper, work, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("container layer: %w", err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", image, upper, work)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("container layer: mount overlay on %s (%s): %w", root, opts, err)
	}
	return root, nil
}
