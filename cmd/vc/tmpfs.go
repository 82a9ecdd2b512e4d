package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
)

// tmpfsFlags are the mount flags --tmpfs takes, besides KEY=VALUE data.
var tmpfsFlags = []string{"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime", "strictatime", "nostrictatime", "sync", "async", "dirsync", "mand", "nomand"}

// tmpfsData are the tmpfs filesystem's own options.
var tmpfsData = []string{"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol", "huge"}

// parseTmpfsFlag reads --tmpfs CTR[:OPTS], OPTS as mount(8) takes them
// (size=64m,mode=1777,exec...).
func parseTmpfsFlag(v string) (mountOpt, error) {
	target, opts, _ := strings.Cut(v, ":")
	if err := checkTarget(target); err != nil {
		return mountOpt{}, err
	}
	m := mountOpt{Type: mountTmpfs, Target: target}
	if opts == "" {
		return m, nil
	}
	for _, o := range strings.Split(opts, ",") {
		k, _, hasVal := strings.Cut(o, "=")
		if !(hasVal && slices.Contains(tmpfsData, k)) && !(!hasVal && slices.Contains(tmpfsFlags, o)) {
			return mountOpt{}, fmt.Errorf("option %q: not a tmpfs mount option (size=, mode=, uid=, gid=, nr_inodes=, ro, exec, suid, dev...): %w", o, errdefs.ErrInvalidArgument)
		}
		m.TmpfsOptions = append(m.TmpfsOptions, o)
	}
	return m, nil
}

// tmpfsOptions are a tmpfs's mount options: docker's defaults, then the
// user's, a later one replacing an earlier of its kind (exec undoes
// noexec, a second size= the first).
func tmpfsOptions(user []string, ro bool) []string {
	opts := []string{"noexec", "nosuid", "nodev"}
	if ro {
		opts = append(opts, "ro")
	}
	opposite := func(o string) string {
		if o == "ro" {
			return "rw"
		}
		if o == "rw" {
			return "ro"
		}
		if n, ok := strings.CutPrefix(o, "no"); ok {
			return n
		}
		return "no" + o
	}
	for _, o := range user {
		k, _, hasVal := strings.Cut(o, "=")
		opts = slices.DeleteFunc(opts, func(e string) bool {
			if hasVal {
				ek, _, _ := strings.Cut(e, "=")
				return ek == k
			}
			return e == o || e == opposite(o)
		})
		opts = append(opts, o)
	}
	return opts
}
