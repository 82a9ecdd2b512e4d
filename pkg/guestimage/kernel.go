package guestimage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// ErrPackageNotFound is returned (wrapped) when apt does not know the
// kernel package.
var ErrPackageNotFound = errors.New("kernel package not found")

// errDownload marks a failed download of the kernel package: stale apt
// lists name a version the mirror no longer has.
var errDownload = errors.New("kernel package download failed")

// debPackage is a Debian kernel package as apt-cache describes it.
type debPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"`
}

// debArch is Debian's name for the machine's architecture.
func debArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	default:
		return runtime.GOARCH // amd64, arm64, ppc64le, s390x, riscv64
	}
}

// DefaultKernelMetaPackage is the package whose dependency names the
// current generic kernel (linux-image-amd64 on x86-64). The cloud flavour
// (linux-image-cloud-amd64) lacks 9p and is not suitable.
func DefaultKernelMetaPackage() string { return "linux-image-" + debArch() }

var kernelPkgRE = regexp.MustCompile(`^linux-image-[0-9][^ ]*$`)

// resolveKernelPackage finds the kernel package to use: pkg itself when
// given, otherwise the linux-image-<ver>-<arch> the meta package depends
// on. When apt has no package lists at all, apt-get update runs first.
//
// apt-cache takes about half a second per call here (no binary package
// cache), so the answer is remembered in cacheDir until apt's lists or
// configuration change.
func resolveKernelPackage(ctx context.Context, cacheDir, pkg string, log *slog.Logger) (debPackage, error) {
	return aptMemoized(cacheDir, pkg, log, func() (debPackage, error) { return resolveKernelPackageApt(ctx, pkg, log) })
}

// aptMemoized returns what resolve answered for key while apt's lists
// and configuration are unchanged (see aptStamp), asking it otherwise.
func aptMemoized(cacheDir, key string, log *slog.Logger, resolve func() (debPackage, error)) (debPackage, error) {
	memoFile := filepath.Join(cacheDir, "apt-resolved.json")
	stamp := aptStamp()
	memo := map[string]aptMemo{}
	if b, err := os.ReadFile(memoFile); err == nil {
		_ = json.Unmarshal(b, &memo)
	}
	if m, ok := memo[key]; ok && m.Stamp == stamp && m.Package.Version != "" {
		return m.Package, nil
	}
	p, err := resolve()
	if err != nil {
		return p, err
	}
	memo[key] = aptMemo{Stamp: stamp, Package: p}
	if err := writeJSON(memoFile, memo); err != nil {
		log.Debug("cannot remember the resolved package", "package", key, "err", err)
	}
	return p, nil
}

type aptMemo struct {
	Stamp   string     `json:"stamp"`
	Package debPackage `json:"package"`
}

// aptStamp changes whenever apt's idea of the candidate packages may
// have: package lists updated, sources or pinning edited.
func aptStamp() string {
	var b strings.Builder
	for _, p := range []string{"/var/lib/apt/lists", "/etc/apt/sources.list", "/etc/apt/sources.list.d", "/etc/apt/preferences", "/etc/apt/preferences.d"} {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s@%d;", p, st.ModTime().UnixNano())
		}
	}
	return b.String()
}

// writeJSON writes v as indented JSON to path, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

func resolveKernelPackageApt(ctx context.Context, pkg string, log *slog.Logger) (debPackage, error) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		return debPackage{}, fmt.Errorf("apt-cache not found: building the guest kernel needs Debian's apt (or set Options.Kernel to a kernel of your own): %w", err)
	}
	p, err := resolveOnce(ctx, pkg)
	if err == nil || !errors.Is(err, ErrPackageNotFound) || !aptKnowsNothing() {
		return p, err
	}
	log.Info("apt has no package lists; running apt-get update", "err", err)
	if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
		return debPackage{}, fmt.Errorf("%w; apt-get update failed: %w: %s", err, uerr, lastLines(out, 5))
	}
	return resolveOnce(ctx, pkg)
}

// aptKnowsNothing reports whether apt has no package lists at all (a
// fresh container image), when apt-get update is worth running.
func aptKnowsNothing() bool {
	lists, _ := filepath.Glob("/var/lib/apt/lists/*_Packages*")
	return len(lists) == 0
}

func resolveOnce(ctx context.Context, pkg string) (debPackage, error) {
	name := pkg
	if name == "" {
		meta := DefaultKernelMetaPackage()
		out, err := aptCache(ctx, "depends", meta)
		if err != nil {
			return debPackage{}, err
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(strings.TrimLeft(sc.Text(), " |"))
			if len(f) == 2 && f[0] == "Depends:" && kernelPkgRE.MatchString(f[1]) {
				name = f[1]
				break
			}
		}
		if name == "" {
			return debPackage{}, fmt.Errorf("%s depends on no linux-image-<version> package (apt-cache depends said %q): %w", meta, strings.TrimSpace(string(out)), ErrPackageNotFound)
		}
	}
	out, err := aptCache(ctx, "show", "--no-all-versions", name)
	if err != nil {
		return debPackage{}, err
	}
	p := debPackage{Name: name}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch k {
		case "Version":
			p.Version = v
		case "SHA256":
			p.SHA256 = v
		}
	}
	if p.Version == "" {
		return debPackage{}, fmt.Errorf("apt-cache show %s gave no version: %w", name, ErrPackageNotFound)
	}
	return p, nil
}

func aptCache(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "apt-cache", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "No packages found") || strings.Contains(msg, "Unable to locate") || strings.Contains(msg, "No package") {
			return nil, fmt.Errorf("apt-cache %s: package %s: %s: %w", args[0], args[len(args)-1], msg, ErrPackageNotFound)
		}
		return nil, fmt.Errorf("apt-cache %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// kernelTree is an unpacked kernel package in the cache.
type kernelTree struct {
	Package       string `json:"package"`
	Version       string `json:"version"`
	KernelVersion string `json:"kernelVersion"`
	// Vmlinuz and ModulesDir are relative to the tree's directory in
	// the cache file; absolute once loaded.
	Vmlinuz    string `json:"vmlinuz"`
	ModulesDir string `json:"modulesDir"`
}

const treeMarker = "kernel.json"

// safeName turns a package version into a path element.
func safeName(s string) string {
	return strings.NewReplacer(":", "%3a", "/", "_").Replace(s)
}

// fetchKernel returns the unpacked kernel package from the cache,
// downloading (apt-get download) and unpacking (dpkg-deb -x, depmod) it
// first when needed. The .deb is kept under cacheDir/deb, the tree under
// cacheDir/kernels/<package>_<version>.
func fetchKernel(ctx context.Context, cacheDir string, p debPackage, log *slog.Logger) (*kernelTree, error) {
	treeDir := filepath.Join(cacheDir, "kernels", p.Name+"_"+safeName(p.Version))
	if t, err := loadTree(treeDir); err == nil {
		return t, nil
	}
	if err := os.MkdirAll(filepath.Join(cacheDir, "kernels"), 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t, err := loadTree(treeDir); err == nil {
		return t, nil // another builder made it while we waited
	}
	deb, err := downloadDeb(ctx, cacheDir, p, log)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return nil, fmt.Errorf("dpkg-deb not found (install dpkg) to unpack %s: %w", deb, err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(cacheDir, "kernels"), ".unpack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	log.Info("unpacking kernel package", "deb", deb)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", deb, err, lastLines(out, 5))
	}
	_ = os.RemoveAll(filepath.Join(tmp, "usr")) // documentation only
	vmlinuz, err := filepath.Glob(filepath.Join(tmp, "boot", "vmlinuz-*"))
	if err != nil || len(vmlinuz) != 1 {
		return nil, fmt.Errorf("%s holds %d boot/vmlinuz-* files, want 1", deb, len(vmlinuz))
	}
	kver := strings.TrimPrefix(filepath.Base(vmlinuz[0]), "vmlinuz-")
	t := &kernelTree{
		Package:       p.Name,
		Version:       p.Version,
		KernelVersion: kver,
		Vmlinuz:       filepath.Join("boot", "vmlinuz-"+kver),
		ModulesDir:    filepath.Join("lib", "modules", kver),
	}
	if _, err := os.Stat(filepath.Join(tmp, t.ModulesDir)); err != nil {
		return nil, fmt.Errorf("%s has no %s: %w", deb, t.ModulesDir, err)
	}
	if _, err := os.Stat(filepath.Join(tmp, t.ModulesDir, "modules.dep")); err != nil {
		if err := depmod(tmp, kver); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, treeMarker), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, treeDir); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	return loadTree(treeDir)
}

func loadTree(dir string) (*kernelTree, error) {
	b, err := os.ReadFile(filepath.Join(dir, treeMarker))
	if err != nil {
		return nil, err
	}
	var t kernelTree
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, treeMarker), err)
	}
	t.Vmlinuz = filepath.Join(dir, t.Vmlinuz)
	t.ModulesDir = filepath.Join(dir, t.ModulesDir)
	return &t, nil
}

// downloadDeb returns the cached .deb of p, fetching it with apt-get
// download when it is missing or does not match apt's checksum.
func downloadDeb(ctx context.Context, cacheDir string, p debPackage, log *slog.Logger) (string, error) {
	debDir := filepath.Join(cacheDir, "deb")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return "", fmt.Errorf("deb cache: %w", err)
	}
	name := fmt.Sprintf("%s_%s_%s.deb", p.Name, safeName(p.Version), debArch())
	final := filepath.Join(debDir, name)
	if _, err := os.Stat(final); err == nil {
		if p.SHA256 == "" {
			return final, nil
		}
		if sum, err := fileSHA256(final); err == nil && sum == p.SHA256 {
			return final, nil
		}
		log.Warn("cached kernel package does not match apt's checksum; downloading again", "deb", final)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return "", fmt.Errorf("apt-get not found, needed to download %s=%s: %w", p.Name, p.Version, err)
	}
	tmp, err := os.MkdirTemp(debDir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloads, which then cannot write
	// into a root-only directory.
	if err := os.Chmod(tmp, 0o777); err != nil {
		return "", err
	}
	log.Info("downloading kernel package", "package", p.Name, "version", p.Version)
	cmd := exec.CommandContext(ctx, "apt-get", "download", p.Name+"="+p.Version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		msg := lastLines(out, 5)
		if strings.Contains(msg, "Unable to locate") || strings.Contains(msg, "not found") {
			return "", fmt.Errorf("apt-get download %s=%s: %s: %w (%w)", p.Name, p.Version, msg, ErrPackageNotFound, errDownload)
		}
		return "", fmt.Errorf("apt-get download %s=%s: %w: %s (%w)", p.Name, p.Version, err, msg, errDownload)
	}
	got, _ := filepath.Glob(filepath.Join(tmp, p.Name+"_*.deb"))
	if len(got) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left %d .deb files, want 1", p.Name, p.Version, len(got))
	}
	if p.SHA256 != "" {
		sum, err := fileSHA256(got[0])
		if err != nil {
			return "", err
		}
		if sum != p.SHA256 {
			return "", fmt.Errorf("downloaded %s has sha256 %s, apt says %s", filepath.Base(got[0]), sum, p.SHA256)
		}
	}
	if err := os.Chmod(got[0], 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(got[0], final); err != nil {
		return "", err
	}
	return final, nil
}

// lockFile takes an exclusive flock on path, waiting for ctx.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-sleepCh():
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// withFreshLists runs build, and if downloading the kernel package failed
// with the default package (apt's lists may be stale: the mirror has moved
// on to a newer kernel), refreshes the lists and builds again. The package
// resolution is cached by the lists' state, so it is resolved anew.
func withFreshLists(ctx context.Context, opts Options, build func() (*Image, error)) (*Image, error) {
	img, err := build()
	if err == nil || !errors.Is(err, errDownload) || opts.KernelPackage != "" || ctx.Err() != nil {
		return img, err
	}
	opts.Logger.Warn("kernel package download failed; refreshing apt's lists and trying again", "err", err)
	if out, uerr := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); uerr != nil {
		return nil, fmt.Errorf("%w; apt-get update failed too: %w: %s", err, uerr, lastLines(out, 5))
	}
	return build()
}
