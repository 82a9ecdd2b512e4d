package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/vc"
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

// cpuPeriod is the CFS period, in µs, docker gives a container it limits
// with --cpus.
const cpuPeriod = 100000

// parseCPUs reads --cpus as docker does: a number of CPUs, fractions
// allowed (0.5, 1.5, 2; 0 or empty: the default). The VM gets vCPUs, the
// number rounded up, within the host's CPUs; the container's cgroup gets
// the number itself, a CFS quota of cpus×100000 µs per 100000 µs.
func parseCPUs(s string) (vcpus uint32, quota int64, err error) {
	if s == "" {
		return 0, 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil, math.IsNaN(f), math.IsInf(f, 0):
		return 0, 0, fmt.Errorf("--cpus %q: want a number of CPUs, such as 0.5 or 2: %w", s, errdefs.ErrInvalidArgument)
	case f == 0:
		return 0, 0, nil
	case f < 0.01:
		// The kernel's least quota is 1 ms per period.
		return 0, 0, fmt.Errorf("--cpus %q: below the least of 0.01 CPUs: %w", s, errdefs.ErrInvalidArgument)
	case f > hypervisor.MaxVCPUs:
		return 0, 0, fmt.Errorf("--cpus %q: more than %d vCPUs: %w", s, hypervisor.MaxVCPUs, errdefs.ErrInvalidArgument)
	}
	quota = int64(math.Round(f * cpuPeriod))
	if vcpus, err = vc.CheckHostCPUs("--cpus", uint64((quota+cpuPeriod-1)/cpuPeriod)); err != nil {
		return 0, 0, err
	}
	return vcpus, quota, nil
}

// volumeSource makes a -v's missing host path a directory, as docker's -v
// does (its --mount refuses one instead).
func volumeSource(host string) error {
	_, err := os.Lstat(host)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(host, 0o755); err != nil {
		return fmt.Errorf("create the host directory: %w", err)
	}
	return nil
}
