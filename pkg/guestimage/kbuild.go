package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
)

// KernelFlavor says which kernel an image boots when Options.Kernel is
// empty.
type KernelFlavor string

// Kernel flavors.
const (
	// KernelMinimal is built from Debian's linux-source with the
	// project's configuration (kconfig/vc.config over tinyconfig):
	// everything the agent needs built in, no modules. The default.
	KernelMinimal KernelFlavor = "minimal"
	// KernelGeneric is Debian's linux-image package, with the modules the
	// agent needs in the initrd.
	KernelGeneric KernelFlavor = "generic"
)

func (f KernelFlavor) valid() error {
	switch f {
	case KernelMinimal, KernelGeneric:
		return nil
	}
	return fmt.Errorf("kernel flavor %q: want %s or %s", f, KernelMinimal, KernelGeneric)
}

// KernelConfig is the project's kernel configuration fragment, merged
// over `make tinyconfig`.
//
//go:embed kconfig/vc.config
var KernelConfig []byte

// kbuildFormat is part of a built kernel's cache key: bump it when the
// build steps change what comes out.
const kbuildFormat = 1

// BuiltKernel is a kernel built from source in the cache.
type BuiltKernel struct {
	// SourcePackage and SourceVersion name the Debian source package.
	SourcePackage string `json:"sourcePackage"`
	SourceVersion string `json:"sourceVersion"`
	// Version is the kernel release (uname -r).
	Version string `json:"version"`
	// ConfigSHA256 is the fragment's hash.
	ConfigSHA256 string `json:"configSha256"`
	// Vmlinux is the uncompressed kernel (an ELF booted through PVH).
	Vmlinux string `json:"-"`
	// Took is how long the build took.
	Took time.Duration `json:"took"`
}

const builtKernelMarker = "kernel.json"

var sourcePkgRE = regexp.MustCompile(`^linux-source-[0-9][^ ]*$`)

// unsetRE is a fragment's line that turns an option off.
var unsetRE = regexp.MustCompile(`^# CONFIG_[A-Za-z0-9_]+ is not set$`)

// resolveSourcePackage is the linux-source-X.Y package the linux-source
// meta package depends on.
func resolveSourcePackage(ctx context.Context) (debPackage, error) {
	out, err := aptCache(ctx, "depends", "linux-source")
	if err != nil {
		return debPackage{}, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(strings.TrimLeft(sc.Text(), " |"))
		if len(f) == 2 && f[0] == "Depends:" && sourcePkgRE.MatchString(f[1]) {
			return resolveOnce(ctx, f[1])
		}
	}
	return debPackage{}, fmt.Errorf("linux-source depends on no linux-source-<version> package (apt-cache depends said %q): %w", strings.TrimSpace(string(out)), ErrPackageNotFound)
}

// compilerVersion is the first line of gcc --version: a new compiler
// builds a new kernel.
func compilerVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "gcc", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("gcc (to build the guest kernel; install build-essential): %w", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line, nil
}

// BuildKernel builds the minimal guest kernel from Debian's linux-source
// with KernelConfig, once: it is kept in opts.CacheDir under a key of the
// source package, the configuration and the compiler, and found there
// afterwards. It takes minutes (about 5 on 2 cores); progress goes to
// opts.Logger.
func BuildKernel(ctx context.Context, opts Options) (*BuiltKernel, error) {
	opts = opts.withDefaults()
	log := opts.Logger
	var pkg debPackage
	_, err := withFreshLists(ctx, opts, func() (*Image, error) {
		// apt-cache costs about half a second a call: remembered as the
		// kernel package is (a built kernel is found on every Build).
		var err error
		pkg, err = aptMemoized(opts.CacheDir, "source:linux-source", log, func() (debPackage, error) { return resolveSourcePackage(ctx) })
		return nil, err
	})
	if err != nil {
		return nil, err
	}
	gcc, err := compilerVersion(ctx)
	if err != nil {
		return nil, err
	}
	confSum := sha256Hex(KernelConfig)
	key := sha256Hex(fmt.Appendf(nil, "%d\n%s\n%s\n%s\n%s\n%s\n", kbuildFormat, pkg.Name, pkg.Version, pkg.SHA256, gcc, confSum))
	dir := filepath.Join(opts.CacheDir, "kernels", dirName(key))
	if k, err := loadBuiltKernel(dir); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k, err := loadBuiltKernel(dir); err == nil {
		return k, nil // built by another process meanwhile
	}
	os.RemoveAll(dir) // an unusable leftover

	start := time.Now()
	deb, err := downloadDeb(ctx, opts.CacheDir, pkg, log)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(filepath.Dir(dir), ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	log.Info("guest kernel: unpacking the source", "package", pkg.Name, "version", pkg.Version)
	if err := unpackSource(ctx, deb, work); err != nil {
		return nil, err
	}
	srcs, _ := filepath.Glob(filepath.Join(work, "linux-source-*"))
	if len(srcs) != 1 {
		return nil, fmt.Errorf("%s: want one linux-source-* directory in the tarball, found %d", pkg.Name, len(srcs))
	}
	src := filepath.Join(work, "src")
	if err := os.Rename(srcs[0], src); err != nil {
		return nil, err
	}
	frag := filepath.Join(work, "vc.config")
	if err := os.WriteFile(frag, KernelConfig, 0o644); err != nil {
		return nil, err
	}
	log.Info("guest kernel: configuring (tinyconfig + vc.config)")
	for _, step := range [][]string{
		{"make", "ARCH=x86_64", "tinyconfig"},
		{"scripts/kconfig/merge_config.sh", "-m", ".config", frag},
		{"make", "ARCH=x86_64", "olddefconfig"},
	} {
		if out, err := run(ctx, src, step...); err != nil {
			return nil, fmt.Errorf("guest kernel: %s: %w: %s", strings.Join(step, " "), err, lastLines(out, 10))
		}
	}
	if err := checkConfig(filepath.Join(src, ".config"), KernelConfig); err != nil {
		return nil, err
	}
	jobs := fmt.Sprintf("-j%d", runtime.NumCPU())
	log.Info("guest kernel: compiling", "jobs", jobs)
	if err := compile(ctx, src, log, "make", "ARCH=x86_64", jobs, "vmlinux"); err != nil {
		return nil, err
	}
	out, err := run(ctx, src, "make", "-s", "ARCH=x86_64", "kernelrelease")
	if err != nil {
		return nil, fmt.Errorf("guest kernel: make kernelrelease: %w", err)
	}
	k := &BuiltKernel{SourcePackage: pkg.Name, SourceVersion: pkg.Version, Version: strings.TrimSpace(string(out)), ConfigSHA256: confSum, Took: time.Since(start).Round(time.Second)}
	stage := filepath.Join(work, "out")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(src, "vmlinux"), filepath.Join(stage, VmlinuxFile)); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(src, ".config"), filepath.Join(stage, "config")); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(stage, builtKernelMarker), k); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, dir); err != nil {
		return nil, err
	}
	k.Vmlinux = filepath.Join(dir, VmlinuxFile)
	log.Info("guest kernel built", "version", k.Version, "took", k.Took, "dir", dir)
	return k, nil
}

func loadBuiltKernel(dir string) (*BuiltKernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, builtKernelMarker))
	if err != nil {
		return nil, err
	}
	var k BuiltKernel
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	k.Vmlinux = filepath.Join(dir, VmlinuxFile)
	if _, err := os.Stat(k.Vmlinux); err != nil {
		return nil, err
	}
	return &k, nil
}

// unpackSource unpacks the source tarball inside the linux-source deb
// into dir.
func unpackSource(ctx context.Context, deb, dir string) error {
	// dpkg-deb gives the package's files as a tar; the source is one
	// .tar.xz in it.
	script := `dpkg-deb --fsys-tarfile "$1" | tar -xO --wildcards '*/linux-source-*.tar.xz' | tar -xJ -C "$2"`
	out, err := run(ctx, "", "bash", "-o", "pipefail", "-c", script, "bash", deb, dir)
	if err != nil {
		return fmt.Errorf("guest kernel: unpack %s: %w: %s", filepath.Base(deb), err, lastLines(out, 5))
	}
	return nil
}

// checkConfig fails naming every option of the fragment the resulting
// configuration lacks: one whose dependency is off is dropped silently by
// kconfig.
func checkConfig(config string, fragment []byte) error {
	have, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	for _, l := range strings.Split(string(have), "\n") {
		set[strings.TrimSpace(l)] = true
	}
	var missing []string
	for _, l := range strings.Split(string(fragment), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || (strings.HasPrefix(l, "#") && !unsetRE.MatchString(l)) {
			continue
		}
		if !set[l] {
			missing = append(missing, l)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("guest kernel: kconfig/vc.config: %s did not stick (a dependency is off)", strings.Join(missing, ", "))
	}
	return nil
}

func run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// compile runs make, logging how many files it compiled every 15 seconds,
// and fails with make's last lines.
func compile(ctx context.Context, dir string, log *slog.Logger, args ...string) error {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var files atomic.Int64
	tail := make(chan []byte, 1)
	go func() {
		var last [][]byte
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l := sc.Bytes()
			if bytes.HasPrefix(l, []byte("  CC ")) || bytes.HasPrefix(l, []byte("  AS ")) {
				files.Add(1)
			}
			last = append(last, append([]byte(nil), l...))
			if len(last) > 20 {
				last = last[1:]
			}
		}
		tail <- bytes.Join(last, []byte("\n"))
	}()
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("guest kernel: %s: %w", strings.Join(args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case err := <-done:
			pw.Close()
			out := <-tail
			if err != nil {
				return fmt.Errorf("guest kernel: %s: %w: %s", strings.Join(args, " "), err, lastLines(out, 10))
			}
			return nil
		case <-tick.C:
			// The minimal configuration compiles about 1600 files.
			log.Info("guest kernel: compiling", "files", files.Load(), "of about", 1600, "elapsed", time.Since(start).Round(time.Second))
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
