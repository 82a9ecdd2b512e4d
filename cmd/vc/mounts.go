package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/pkg/volume"
)

// What -v, --mount and --tmpfs ask, docker's three ways of giving a
// container a mount: a host path (bind), a volume of the data root's
// store (volume), a tmpfs in the guest's memory (tmpfs).
const (
	mountBind   = "bind"
	mountVolume = "volume"
	mountTmpfs  = "tmpfs"
)

// mountOpt is one mount as the run options keep it: an anonymous
// volume is named when the flags are read, so the container's later runs
// (vc start, vc restart) find the same volume.
type mountOpt struct {
	Type   string `json:"type"`
	Source string `json:"source,omitempty"` // bind: the host path; volume: its name
	Target string `json:"target"`
	// ReadOnly mounts it read-only.
	ReadOnly bool `json:"readonly,omitempty"`
	// Propagation is a bind's (default rprivate).
	Propagation string `json:"propagation,omitempty"`
	// TmpfsOptions are a tmpfs's mount options on top of docker's
	// noexec,nosuid,nodev.
	TmpfsOptions []string `json:"tmpfs_options,omitempty"`
	// Anonymous: a volume made for this container, removed with it by
	// vc rm -v and vc run --rm.
	Anonymous bool `json:"anonymous,omitempty"`
	// NoCopy: the volume's first use does not copy the image's content.
	NoCopy bool `json:"nocopy,omitempty"`
	// MakeSource: -v creates a missing host path; --mount refuses it.
	MakeSource bool `json:"make_source,omitempty"`
}

var propagations = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}

// parseVolumeFlag reads -v as docker does: HOST:CTR[:OPTS] binds an
// absolute host path, NAME:CTR[:OPTS] mounts the named volume, and CTR
// alone an anonymous volume. OPTS: ro or rw, nocopy, a propagation.
func parseVolumeFlag(v string) (mountOpt, error) {
	parts := strings.Split(v, ":")
	var m mountOpt
	switch len(parts) {
	case 1:
		m = mountOpt{Type: mountVolume, Source: volume.NewName(), Target: parts[0], Anonymous: true}
	case 2, 3:
		m = mountOpt{Target: parts[1]}
		switch src := parts[0]; {
		case src == "":
			return mountOpt{}, fmt.Errorf("source: empty: want HOST:CONTAINER[:ro], NAME:CONTAINER[:ro] or CONTAINER: %w", errdefs.ErrInvalidArgument)
		case strings.HasPrefix(src, "/"):
			m.Type, m.Source, m.MakeSource = mountBind, filepath.Clean(src), true
		case strings.HasPrefix(src, "."):
			return mountOpt{}, fmt.Errorf("source %q: a host path must be absolute: %w", src, errdefs.ErrInvalidArgument)
		default:
			if err := volume.CheckName(src); err != nil {
				return mountOpt{}, fmt.Errorf("source: %w", err)
			}
			m.Type, m.Source = mountVolume, src
		}
	default:
		return mountOpt{}, fmt.Errorf("want HOST:CONTAINER[:ro], NAME:CONTAINER[:ro] or CONTAINER: %w", errdefs.ErrInvalidArgument)
	}
	if len(parts) == 3 {
		for _, o := range strings.Split(parts[2], ",") {
			switch {
			case o == "ro":
				m.ReadOnly = true
			case o == "rw":
				m.ReadOnly = false
			case o == "nocopy" && m.Type == mountVolume:
				m.NoCopy = true
			case slices.Contains(propagations, o) && m.Type == mountBind:
				m.Propagation = o
			default:
				return mountOpt{}, fmt.Errorf("mode %q: want ro, rw, nocopy (a volume) or a propagation (a host path): %w", o, errdefs.ErrInvalidArgument)
			}
		}
	}
	return m, checkTarget(m.Target)
}

func checkTarget(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("target: empty: %w", errdefs.ErrInvalidArgument)
	case !filepath.IsAbs(t):
		return fmt.Errorf("target %q: not an absolute path: %w", t, errdefs.ErrInvalidArgument)
	case filepath.Clean(t) == "/":
		return fmt.Errorf("target %q: cannot be /: %w", t, errdefs.ErrInvalidArgument)
	}
	return nil
}

// parseMountFlag reads --mount as docker does: comma-separated KEY=VALUE
// fields; type is bind, volume (the default) or tmpfs. A bind's source
// must exist.
func parseMountFlag(v string) (mountOpt, error) {
	m := mountOpt{Type: mountVolume}
	var size, mode string
	var sawSource, sawBind, sawVolume, sawTmpfs string
	for _, field := range strings.Split(v, ",") {
		key, val, hasVal := strings.Cut(field, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		switch key {
		case "type":
			m.Type = val
		case "source", "src":
			m.Source, sawSource = val, key
		case "target", "destination", "dst":
			m.Target = val
		case "readonly", "ro":
			b := true
			if hasVal {
				var err error
				if b, err = strconv.ParseBool(val); err != nil {
					return mountOpt{}, fmt.Errorf("field %s=%q: want true or false: %w", key, val, errdefs.ErrInvalidArgument)
				}
			}
			m.ReadOnly = b
		case "bind-propagation":
			if !slices.Contains(propagations, val) {
				return mountOpt{}, fmt.Errorf("field bind-propagation=%q: want one of %s: %w", val, strings.Join(propagations, ", "), errdefs.ErrInvalidArgument)
			}
			m.Propagation, sawBind = val, key
		case "volume-nocopy":
			b := true
			if hasVal {
				var err error
				if b, err = strconv.ParseBool(val); err != nil {
					return mountOpt{}, fmt.Errorf("field volume-nocopy=%q: want true or false: %w", val, errdefs.ErrInvalidArgument)
				}
			}
			m.NoCopy, sawVolume = b, key
		case "tmpfs-size":
			size, sawTmpfs = val, key
		case "tmpfs-mode":
			mode, sawTmpfs = val, key
		default:
			return mountOpt{}, fmt.Errorf("field %q: unknown key %q (want type, source, target, readonly, bind-propagation, volume-nocopy, tmpfs-size or tmpfs-mode): %w", field, key, errdefs.ErrInvalidArgument)
		}
	}
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("invalid mount config for type %q: %s: %w", m.Type, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
	}
	if m.Target == "" {
		return mountOpt{}, invalid("field target must not be empty")
	}
	if err := checkTarget(m.Target); err != nil {
		return mountOpt{}, invalid("%v", err)
	}
	wrong := func(key string) error { return invalid("field %s does not apply", key) }
	switch m.Type {
	case mountBind:
		switch {
		case sawVolume != "":
			return mountOpt{}, wrong(sawVolume)
		case sawTmpfs != "":
			return mountOpt{}, wrong(sawTmpfs)
		case m.Source == "":
			return mountOpt{}, invalid("field source must not be empty")
		case !filepath.IsAbs(m.Source):
			return mountOpt{}, invalid("source %q: not an absolute path", m.Source)
		}
		m.Source = filepath.Clean(m.Source)
		if _, err := os.Stat(m.Source); errors.Is(err, fs.ErrNotExist) {
			return mountOpt{}, fmt.Errorf("invalid mount config for type %q: bind source path does not exist: %s: %w", m.Type, m.Source, errdefs.ErrNotFound)
		} else if err != nil {
			return mountOpt{}, invalid("bind source path %s: %v", m.Source, err)
		}
	case mountVolume:
		switch {
		case sawBind != "":
			return mountOpt{}, wrong(sawBind)
		case sawTmpfs != "":
			return mountOpt{}, wrong(sawTmpfs)
		case m.Source == "":
			m.Source, m.Anonymous = volume.NewName(), true
		default:
			if err := volume.CheckName(m.Source); err != nil {
				return mountOpt{}, invalid("field source: %v", err)
			}
		}
	case mountTmpfs:
		switch {
		case sawBind != "":
			return mountOpt{}, wrong(sawBind)
		case sawVolume != "":
			return mountOpt{}, wrong(sawVolume)
		case sawSource != "":
			return mountOpt{}, invalid("field %s must not be specified", sawSource)
		}
		if size != "" {
			n, err := parseBytes(size)
			if err != nil {
				return mountOpt{}, invalid("field tmpfs-size=%q: %v", size, err)
			}
			m.TmpfsOptions = append(m.TmpfsOptions, fmt.Sprintf("size=%d", n))
		}
		if mode != "" {
			n, err := strconv.ParseUint(mode, 8, 32)
			if err != nil || n > 0o7777 {
				return mountOpt{}, invalid("field tmpfs-mode=%q: want an octal mode such as 1777", mode)
			}
			m.TmpfsOptions = append(m.TmpfsOptions, fmt.Sprintf("mode=%o", n))
		}
	default:
		return mountOpt{}, fmt.Errorf("field type=%q: want bind, volume or tmpfs: %w", m.Type, errdefs.ErrInvalidArgument)
	}
	return m, nil
}

// parseBytes reads a size as docker does: a number, with b, k, m or g
// (KiB...) after it or not.
func parseBytes(s string) (uint64, error) {
	num := strings.TrimRight(strings.ToLower(s), "bkmgi")
	unit := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(s[len(num):]), "b"), "i")
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a size such as 64m")
	}
	shift := map[string]uint{"": 0, "k": 10, "m": 20, "g": 30}
	sh, ok := shift[unit]
	if !ok || n > (1<<63)>>sh {
		return 0, fmt.Errorf("want a size such as 64m")
	}
	return n << sh, nil
}

// mountOptions reads -v, --mount and --tmpfs, refusing two mounts on one
// target as docker does.
func mountOptions(vols, mounts, tmpfs []string) ([]mountOpt, error) {
	var out []mountOpt
	add := func(flag string, list []string, parse func(string) (mountOpt, error)) error {
		for i, v := range list {
			m, err := parse(v)
			if err != nil {
				return fmt.Errorf("%s #%d %q: %w", flag, i+1, v, err)
			}
			m.Target = filepath.Clean(m.Target)
			for _, o := range out {
				if o.Target == m.Target {
					return fmt.Errorf("%s #%d %q: duplicate mount point %s: %w", flag, i+1, v, m.Target, errdefs.ErrInvalidArgument)
				}
			}
			out = append(out, m)
		}
		return nil
	}
	if err := add("-v", vols, parseVolumeFlag); err != nil {
		return nil, err
	}
	if err := add("--mount", mounts, parseMountFlag); err != nil {
		return nil, err
	}
	if err := add("--tmpfs", tmpfs, parseTmpfsFlag); err != nil {
		return nil, err
	}
	return out, nil
}

// specMount is m as the container's OCI mount; a volume is created in
// the store if missing. -v's missing host path is created.
func (m mountOpt) specMount(vols *volume.Store) (specs.Mount, error) {
	switch m.Type {
	case mountTmpfs:
		return specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: tmpfsOptions(m.TmpfsOptions, m.ReadOnly)}, nil
	case mountVolume:
		labels := map[string]string{}
		if m.Anonymous {
			labels[volume.AnonymousLabel] = ""
		}
		v, err := vols.Create(m.Source, labels)
		if err != nil {
			return specs.Mount{}, err
		}
		return bindMount(v.Mountpoint, m.Target, "", m.ReadOnly), nil
	case mountBind:
		if m.MakeSource {
			if err := volumeSource(m.Source); err != nil {
				return specs.Mount{}, err
			}
		} else if _, err := os.Stat(m.Source); err != nil {
			return specs.Mount{}, fmt.Errorf("bind source path: %w", err)
		}
		return bindMount(m.Source, m.Target, m.Propagation, m.ReadOnly), nil
	}
	return specs.Mount{}, fmt.Errorf("type %q: unknown: %w", m.Type, errdefs.ErrInvalidArgument)
}

func bindMount(src, dst, propagation string, ro bool) specs.Mount {
	if propagation == "" {
		propagation = "rprivate"
	}
	opts := []string{"rbind", propagation}
	if ro {
		opts = append(opts, "ro")
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}
}

// anonymousVolumes are the names of o's anonymous volumes.
func anonymousVolumes(o runOptions) []string {
	var out []string
	for _, m := range o.Mounts {
		if m.Type == mountVolume && m.Anonymous {
			out = append(out, m.Source)
		}
	}
	return out
}

// imageVolumes are anonymous volumes for the VOLUMEs of the image's
// config that no mount of mounts covers, as docker makes them. A
// container run again has them in its mounts already.
func imageVolumes(src imageSource, mounts []mountOpt) []mountOpt {
	if src.image == nil || src.image.Config == nil {
		return nil
	}
	var targets []string
	for p := range src.image.Config.Config.Volumes {
		if checkTarget(p) == nil {
			targets = append(targets, filepath.Clean(p))
		}
	}
	slices.Sort(targets)
	var out []mountOpt
	for _, t := range slices.Compact(targets) {
		if slices.ContainsFunc(mounts, func(m mountOpt) bool { return m.Target == t }) {
			continue
		}
		out = append(out, mountOpt{Type: mountVolume, Source: volume.NewName(), Target: t, Anonymous: true})
	}
	return out
}
