package storage

import (
	"strings"

	"golang.org/x/sys/unix"
)

// Options is a list of mount options split the way mount(2) takes them.
type Options struct {
	// Flags are the MS_* flags to mount with.
	Flags uintptr
	// Propagation holds MS_SHARED, MS_PRIVATE, ... (with MS_REC for the
	// "r" forms); mount(2) takes them in a call of their own.
	Propagation uintptr
	// Data is what the filesystem parses: the options that are no flag,
	// comma-separated, in their order.
	Data string
}

type flagOpt struct {
	clear bool
	flag  uintptr
}

var flagOpts = map[string]flagOpt{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propagationOpts = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// ParseOptions splits mount options ("ro", "nosuid", "rbind", "rprivate",
// "size=64m", ...) into flags, propagation and filesystem data. Later
// options win over earlier ones ("ro,rw" is read-write). Empty entries are
// ignored.
func ParseOptions(opts []string) Options {
	var o Options
	var data []string
	for _, opt := range opts {
		opt = strings.TrimSpace(opt)
		if opt == "" {
			continue
		}
		if f, ok := flagOpts[opt]; ok {
			if f.clear {
				o.Flags &^= f.flag
			} else {
				o.Flags |= f.flag
			}
			continue
		}
		if p, ok := propagationOpts[opt]; ok {
			o.Propagation = p
			continue
		}
		data = append(data, opt)
	}
	o.Data = strings.Join(data, ",")
	return o
}

// mergeData joins filesystem data options, the later ones replacing the
// earlier ones of the same key ("msize=8192" replaces "msize=512000").
func mergeData(base []string, extra string) string {
	out := append([]string(nil), base...)
	if extra != "" {
	next:
		for _, e := range strings.Split(extra, ",") {
			k, _, _ := strings.Cut(e, "=")
			for i, b := range out {
				if bk, _, _ := strings.Cut(b, "="); bk == k {
					out[i] = e
					continue next
				}
			}
			out = append(out, e)
		}
	}
	return strings.Join(out, ",")
}
