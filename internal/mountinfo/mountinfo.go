// Package mountinfo reads /proc/<pid>/mountinfo.
//
// It is a small parser, without another dependency, so that the agent's
// packages and the host's share one reading of the mount table.
package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Info is one line of a mountinfo file (proc(5)).
type Info struct {
	ID, Parent   int
	Major, Minor int
	// Root is the path, inside its filesystem, of what is mounted: "/"
	// for a whole filesystem, a subdirectory for a bind mount of one.
	Root       string
	MountPoint string
	Options    string
	FSType     string
	Source     string
	SuperOpts  string
}

// Self is the mount table of the calling process.
const Self = "/proc/self/mountinfo"

// Thread is the mount table of the calling thread. The host side reads
// it rather than Self, which is the main thread's: a goroutine locked to
// the main thread that left it in a mount namespace of its own (as a
// thread unshared to mount sysfs and discarded does; Go parks the main
// thread rather than ending it) would leave Self showing that namespace,
// where the host's later mounts never appear.
const Thread = "/proc/thread-self/mountinfo"

// Read parses the mountinfo file at path.
func Read(path string) ([]Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	infos, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return infos, nil
}

// Parse parses a mountinfo table.
func Parse(r io.Reader) ([]Info, error) {
	var infos []Info
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.TrimSpace(text) == "" {
			continue
		}
		info, err := parseLine(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		infos = append(infos, info)
	}
	return infos, sc.Err()
}

// parseLine parses
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
func parseLine(s string) (Info, error) {
	pre, post, ok := strings.Cut(s, " - ")
	if !ok {
		return Info{}, fmt.Errorf("no separator in %q", s)
	}
	f := strings.Fields(pre)
	g := strings.Fields(post)
	if len(f) < 6 || len(g) < 2 {
		return Info{}, fmt.Errorf("too few fields in %q", s)
	}
	var info Info
	var err error
	if info.ID, err = strconv.Atoi(f[0]); err != nil {
		return Info{}, fmt.Errorf("mount id %q: %w", f[0], err)
	}
	if info.Parent, err = strconv.Atoi(f[1]); err != nil {
		return Info{}, fmt.Errorf("parent id %q: %w", f[1], err)
	}
	maj, min, ok := strings.Cut(f[2], ":")
	if !ok {
		return Info{}, fmt.Errorf("device %q", f[2])
	}
	if info.Major, err = strconv.Atoi(maj); err != nil {
		return Info{}, fmt.Errorf("device %q: %w", f[2], err)
	}
	if info.Minor, err = strconv.Atoi(min); err != nil {
		return Info{}, fmt.Errorf("device %q: %w", f[2], err)
	}
	info.Root = Unescape(f[3])
	info.MountPoint = Unescape(f[4])
	info.Options = f[5]
	info.FSType = Unescape(g[0])
	info.Source = Unescape(g[1])
	if len(g) > 2 {
		info.SuperOpts = g[2]
	}
	return info, nil
}

// Unescape undoes the kernel's octal escaping of space, tab, newline and
// backslash (\040, \011, \012, \134).
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			v, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// Lookup returns the topmost mount whose mount point is mountPoint.
func Lookup(infos []Info, mountPoint string) (Info, bool) {
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].MountPoint == mountPoint {
			return infos[i], true
		}
	}
	return Info{}, false
}
