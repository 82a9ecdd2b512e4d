package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// parseMiB reads a size like 512M, 1G, 268435456 (bytes) or 256m into MiB.
func parseMiB(s string) (uint32, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	mult := uint64(1)
	switch {
	case strings.HasSuffix(s, "g"), strings.HasSuffix(s, "gb"), strings.HasSuffix(s, "gib"):
		mult = 1 << 30
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "mb"), strings.HasSuffix(s, "mib"):
		mult = 1 << 20
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "kb"), strings.HasSuffix(s, "kib"):
		mult = 1 << 10
	}
	n, err := strconv.ParseUint(strings.TrimRight(s, "gmkib"), 10, 64)
	if err != nil {
		return 0, errors.New("not a size (want e.g. 512M or 1G)")
	}
	mib := n * mult >> 20
	if mib > 1<<20 {
		return 0, errors.New("larger than 1 TiB")
	}
	return uint32(mib), nil
}

// parseVolume reads HOST:CONTAINER[:ro|rw] into a bind mount.
func parseVolume(v string) (specs.Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return specs.Mount{}, errors.New("want HOST:CONTAINER[:ro]")
	}
	host, ctr := parts[0], parts[1]
	if !filepath.IsAbs(host) || !filepath.IsAbs(ctr) {
		return specs.Mount{}, errors.New("both paths must be absolute")
	}
	opts := []string{"rbind", "rprivate"}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			opts = append(opts, "ro")
		case "rw":
		default:
			return specs.Mount{}, fmt.Errorf("mode %q: want ro or rw", parts[2])
		}
	}
	return specs.Mount{Destination: filepath.Clean(ctr), Type: "bind", Source: filepath.Clean(host), Options: opts}, nil
}
