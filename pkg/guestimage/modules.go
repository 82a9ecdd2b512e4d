package guestimage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultModules are the kernel modules the agent needs from Debian's
// generic kernel: virtio transport and console (the agent's virtio-serial
// channel), block, net, rng, the balloon (free page reporting), 9p and
// virtio-fs (shared directories), vsock, overlay and ext4 (container root
// filesystems). Their dependencies are
// added by Build.
var DefaultModules = []string{
	"virtio_pci",
	"virtio_console",
	"virtio_blk",
	"virtio_net",
	"virtio_rng",
	"virtio_balloon",
	"9pnet_virtio",
	"9p",
	"virtiofs",
	"vmw_vsock_virtio_transport",
	"overlay",
	"ext4",
}

// moduleDB is what depmod knows about one kernel's modules.
type moduleDB struct {
	dir     string              // lib/modules/<version>
	paths   map[string]string   // module name -> path relative to dir
	deps    map[string][]string // module name -> names it depends on (modules.dep order)
	builtin map[string]bool
	softPre map[string][]string // module name -> softdep "pre:" names (modules or aliases)
	aliases map[string][]string // exact alias -> module names
}

// modName is the kernel's name of a module file: base name without the
// .ko[.xz|.zst|.gz] suffix, dashes as underscores.
func modName(p string) string {
	b := filepath.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return normName(b)
}

func normName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// compressionSuffix returns the compression extension of a module file
// (".xz", ".zst", ".gz") or "".
func compressionSuffix(p string) string {
	for _, s := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, s) {
			return s[3:]
		}
	}
	return ""
}

// depmod makes modules.dep and friends for the tree under base
// (base/lib/modules/version).
func depmod(base, version string) error {
	bin, err := exec.LookPath("depmod")
	if err != nil {
		return fmt.Errorf("depmod not found (install kmod): %w", err)
	}
	out, err := exec.Command(bin, "-b", base, version).CombinedOutput()
	if err != nil {
		return fmt.Errorf("depmod -b %s %s: %w: %s", base, version, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// loadModuleDB reads modules.dep, modules.builtin, modules.softdep and
// modules.alias from dir (a lib/modules/<version> directory).
func loadModuleDB(dir string) (*moduleDB, error) {
	db := &moduleDB{
		dir:     dir,
		paths:   map[string]string{},
		deps:    map[string][]string{},
		builtin: map[string]bool{},
		softPre: map[string][]string{},
		aliases: map[string][]string{},
	}
	err := eachLine(filepath.Join(dir, "modules.dep"), func(line string) error {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("bad line %q", line)
		}
		name := modName(mod)
		db.paths[name] = mod
		for _, d := range strings.Fields(deps) {
			db.deps[name] = append(db.deps[name], modName(d))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := eachLine(filepath.Join(dir, "modules.builtin"), func(line string) error {
		db.builtin[modName(line)] = true
		return nil
	}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := eachLine(filepath.Join(dir, "modules.softdep"), func(line string) error {
		// softdep MODULE pre: A B post: C
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return nil
		}
		name, pre := normName(f[1]), false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					db.softPre[name] = append(db.softPre[name], w)
				}
			}
		}
		return nil
	}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := eachLine(filepath.Join(dir, "modules.alias"), func(line string) error {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
			db.aliases[f[1]] = append(db.aliases[f[1]], normName(f[2]))
		}
		return nil
	}); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return db, nil
}

func eachLine(file string, fn func(string) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(line); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	return nil
}

// ErrModuleNotFound is returned (wrapped) for a requested module the
// kernel neither has as a module nor builds in.
var ErrModuleNotFound = errors.New("kernel module not found")

// resolve returns the module files (relative to db.dir) to load for the
// requested names, dependencies first, each once. Built-in modules are
// skipped and returned in builtin. Names may be aliases
// ("crypto-crc32c"). Soft "pre:" dependencies are honoured when they
// resolve to a module; dependencies that are built in are skipped.
func (db *moduleDB) resolve(names []string) (order, builtin []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name string, chain []string, soft bool) error
	visit = func(name string, chain []string, soft bool) error {
		name = db.lookup(name, state)
		if db.builtin[name] {
			if !soft && !slices.Contains(builtin, name) && len(chain) == 0 {
				builtin = append(builtin, name)
			}
			return nil
		}
		p, ok := db.paths[name]
		if !ok {
			if soft {
				return nil
			}
			if len(chain) > 0 {
				return fmt.Errorf("%s (needed by %s) in %s: %w", name, strings.Join(chain, " <- "), db.dir, ErrModuleNotFound)
			}
			return fmt.Errorf("%s in %s: %w", name, db.dir, ErrModuleNotFound)
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s -> %s", strings.Join(chain, " -> "), name)
		}
		state[name] = visiting
		chain = append(chain, name)
		for _, s := range db.softPre[name] {
			if err := visit(s, chain, true); err != nil {
				return err
			}
		}
		// modules.dep lists dependencies in the reverse of the order
		// modprobe loads them.
		deps := db.deps[name]
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], chain, false); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil, false); err != nil {
			return nil, nil, err
		}
	}
	return order, builtin, nil
}

// lookup maps a requested name or alias to a module name. For an alias
// provided by several modules, one already chosen wins, then a *_generic
// one, then the first by name.
func (db *moduleDB) lookup(name string, chosen map[string]int) string {
	n := normName(name)
	if _, ok := db.paths[n]; ok || db.builtin[n] {
		return n
	}
	cands := db.aliases[name]
	if len(cands) == 0 {
		return n
	}
	for _, c := range cands {
		if db.builtin[c] || chosen[c] != 0 {
			return c
		}
	}
	sorted := slices.Clone(cands)
	slices.Sort(sorted)
	for _, c := range sorted {
		if strings.HasSuffix(c, "_generic") {
			return c
		}
	}
	return sorted[0]
}
