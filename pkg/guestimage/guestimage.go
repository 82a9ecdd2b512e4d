// Package guestimage builds the kernel + initrd bundle a sandbox VM boots.
//
// The kernel is Debian's generic linux-image-<version>-<arch> (fetched
// with apt-get download and unpacked with dpkg-deb; the cloud flavour
// lacks 9p). The initrd is a cpio archive written here whose /init is the
// static vc-agent, with the kernel modules the agent needs (dependencies
// resolved from depmod's files, dependencies first) and their load order
// in /etc/vc-agent/modules.
//
// Images are content addressed: the directory name is derived from a hash
// of every input (agent bytes, kernel package and version, module list,
// options), so building twice with the same inputs does nothing, and any
// change makes a new image beside the old one. Each image directory holds
// vmlinuz, initrd.img and manifest.json. The downloaded .deb and the
// unpacked kernel are cached separately (under /var/cache/vc), so a
// changed agent only costs writing a new initrd.
//
// A user may bring a kernel (with or without its modules) or a kernel and
// an initrd of their own; see Options.
package guestimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Defaults.
const (
	// DefaultRoot is where images are kept.
	DefaultRoot = "/var/lib/vc/images"
	// DefaultCacheDir is where downloaded kernel packages and unpacked
	// kernels are kept.
	DefaultCacheDir = "/var/cache/vc"
	// DefaultBusybox is the static busybox Debian's busybox-static installs.
	DefaultBusybox = "/bin/busybox"
)

// Names of the files in an image directory.
const (
	ManifestFile = "manifest.json"
	KernelFile   = "vmlinuz"
	InitrdFile   = "initrd.img"
)

// formatVersion is part of every image key: bump it when the initrd
// layout changes so old images are not reused.
const formatVersion = 2

// Kind says what an image is for.
type Kind string

// Kinds of image.
const (
	// KindAgent images boot vc-agent as /init.
	KindAgent Kind = "agent"
	// KindFloor images boot a program that only powers the machine off:
	// the floor cold-start figures are compared with.
	KindFloor Kind = "floor"
	// KindCustom images are a kernel and an initrd the user brought.
	KindCustom Kind = "custom"
)

// Options say what to build. The zero value of every field but Agent has
// a default.
type Options struct {
	// Root is the image directory (default DefaultRoot).
	Root string
	// CacheDir holds downloaded and unpacked kernel packages (default
	// DefaultCacheDir).
	CacheDir string
	// Agent is the static vc-agent binary that becomes /init. Required by
	// Build unless Kernel and Initrd are both given.
	Agent string
	// KernelFlavor is the kernel to boot when Kernel is empty: the
	// minimal one built from source (KernelMinimal, the default) or
	// Debian's generic package (KernelGeneric, the default when
	// KernelPackage is set).
	KernelFlavor KernelFlavor
	// KernelPackage is the Debian kernel package of the generic flavor
	// ("linux-image-6.1.0-56-amd64"); empty means the one
	// linux-image-<arch> currently depends on.
	KernelPackage string
	// Modules are the kernel modules to load, by name or alias; their
	// dependencies are added. Nil means DefaultModules; an empty non-nil
	// slice means none. Built-in ones are skipped.
	Modules []string
	// Compression of the initrd (default DefaultCompression).
	Compression Compression
	// Busybox adds a static busybox as /bin/busybox, with its applets
	// linked in /bin, for a debug console. Off by default.
	Busybox bool
	// BusyboxPath is the busybox binary (default DefaultBusybox).
	BusyboxPath string

	// Kernel is a kernel image of the user's own instead of Debian's.
	// With Initrd too, both are only validated and recorded; alone, the
	// initrd is built around it with modules from KernelModulesDir.
	Kernel string
	// Initrd is the user's initrd, used as is (requires Kernel).
	Initrd string
	// KernelModulesDir is the lib/modules/<version> directory of Kernel
	// (with modules.dep, or laid out so depmod can make one). Empty: no
	// modules are loaded, everything the agent needs must be built in.
	KernelModulesDir string

	// Logger receives progress (default slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Root == "" {
		o.Root = DefaultRoot
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	if o.KernelFlavor == "" {
		o.KernelFlavor = KernelMinimal
		if o.KernelPackage != "" {
			o.KernelFlavor = KernelGeneric
		}
	}
	if o.BusyboxPath == "" {
		o.BusyboxPath = DefaultBusybox
	}
	if o.Modules == nil {
		o.Modules = DefaultModules
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Manifest describes an image; it is stored as manifest.json beside it.
type Manifest struct {
	// Key is the hash of the image's inputs; the directory is named by
	// its first 16 characters.
	Key     string    `json:"key"`
	Kind    Kind      `json:"kind"`
	Created time.Time `json:"created"`

	KernelVersion string `json:"kernelVersion,omitempty"`
	// KernelPackage and KernelPackageVersion name the Debian package
	// the kernel came from (empty for a user's kernel).
	KernelPackage        string `json:"kernelPackage,omitempty"`
	KernelPackageVersion string `json:"kernelPackageVersion,omitempty"`
	// KernelFlavor is minimal or generic (empty for a user's kernel);
	// a minimal kernel's package is the source it was built from.
	KernelFlavor KernelFlavor `json:"kernelFlavor,omitempty"`

	// KernelPath and InitrdPath are file names in the image directory,
	// or absolute paths for a user's files.
	KernelPath string `json:"kernelFile"`
	InitrdPath string `json:"initrdFile"`
	KernelSize int64  `json:"kernelSize"`
	InitrdSize int64  `json:"initrdSize"`
	// CpioSize is the initrd's uncompressed size.
	CpioSize    int64       `json:"cpioSize,omitempty"`
	Compression Compression `json:"compression,omitempty"`

	// Modules is the content of /etc/vc-agent/modules: module files
	// relative to /lib/modules, in load order.
	Modules []string `json:"modules,omitempty"`
	// Builtin are requested modules the kernel has built in.
	Builtin     []string `json:"builtin,omitempty"`
	ModulesSize int64    `json:"modulesSize,omitempty"`

	// AgentSHA256 is the sha256 of /init for an agent image, InitSHA256
	// that of the floor program for a floor image.
	AgentSHA256 string `json:"agentSha256,omitempty"`
	AgentSize   int64  `json:"agentSize,omitempty"`
	InitSHA256  string `json:"initSha256,omitempty"`
	Busybox     bool   `json:"busybox,omitempty"`
}

// Image is a built image.
type Image struct {
	// Dir is the image directory.
	Dir string `json:"dir"`
	// Kernel and Initrd are absolute paths to boot with.
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd"`
	Manifest
}

// keyInputs is everything that makes an image what it is.
type keyInputs struct {
	Format               int
	Kind                 Kind
	InitSHA256           string
	KernelPackage        string   `json:",omitempty"`
	KernelPackageVersion string   `json:",omitempty"`
	KernelPackageSHA256  string   `json:",omitempty"`
	KernelSHA256         string   `json:",omitempty"`
	InitrdSHA256         string   `json:",omitempty"`
	ModuleFiles          []string `json:",omitempty"` // user modules: path=sha256
	Modules              []string
	Compression          Compression
	BusyboxSHA256        string       `json:",omitempty"`
	KernelFlavor         KernelFlavor `json:",omitempty"`
}

func (k keyInputs) key() string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func dirName(key string) string { return key[:16] }

// flavorOf is the flavor of the kernel opts boots: none for a user's.
func flavorOf(opts Options) KernelFlavor {
	if opts.Kernel != "" {
		return ""
	}
	return opts.KernelFlavor
}

// Build builds the agent image opts describe, or returns the one already
// built from the same inputs.
func Build(ctx context.Context, opts Options) (*Image, error) {
	opts = opts.withDefaults()
	if opts.Initrd != "" {
		return recordCustom(opts)
	}
	if opts.Agent == "" {
		return nil, errors.New("guestimage: no agent binary given (Options.Agent)")
	}
	if err := checkStaticExecutable("agent", opts.Agent); err != nil {
		return nil, err
	}
	p := plan{kind: KindAgent, init: opts.Agent, modules: opts.Modules}
	if opts.Busybox {
		if err := checkStaticExecutable("busybox", opts.BusyboxPath); err != nil {
			return nil, fmt.Errorf("%w (install busybox-static or set Options.BusyboxPath)", err)
		}
		p.busybox = opts.BusyboxPath
	}
	return withFreshLists(ctx, opts, func() (*Image, error) { return build(ctx, opts, p) })
}

// Kernel is a Debian kernel package unpacked in the cache.
type Kernel struct {
	Package, PackageVersion string
	// Version is the kernel release (uname -r).
	Version string
	// Vmlinuz is the kernel as Debian ships it (a bzImage), Vmlinux the
	// same uncompressed (an ELF, booted through PVH), ModulesDir its
	// lib/modules/<version>.
	Vmlinuz, Vmlinux, ModulesDir string
}

// FetchKernel resolves the kernel package opts names (default: the one
// linux-image-<arch> depends on), downloads and unpacks it into the cache
// once, and unpacks its vmlinux. Build uses the same cache.
func FetchKernel(ctx context.Context, opts Options) (*Kernel, error) {
	opts = opts.withDefaults()
	var k *Kernel
	_, err := withFreshLists(ctx, opts, func() (*Image, error) {
		p, err := resolveKernelPackage(ctx, opts.CacheDir, opts.KernelPackage, opts.Logger)
		if err != nil {
			return nil, err
		}
		k, err = unpackedKernel(ctx, opts.CacheDir, p, opts.Logger)
		return nil, err
	})
	return k, err
}

// unpackedKernel fetches package p into the cache (once) and unpacks its
// vmlinux beside its vmlinuz (once).
func unpackedKernel(ctx context.Context, cacheDir string, p debPackage, log *slog.Logger) (*Kernel, error) {
	tree, err := fetchKernel(ctx, cacheDir, p, log)
	if err != nil {
		return nil, err
	}
	vmlinux := filepath.Join(filepath.Dir(tree.Vmlinuz), VmlinuxFile+"-"+tree.KernelVersion)
	if _, err := os.Stat(vmlinux); err != nil {
		if err := ExtractVmlinux(tree.Vmlinuz, vmlinux); err != nil {
			return nil, err
		}
	}
	return &Kernel{Package: p.Name, PackageVersion: p.Version, Version: tree.KernelVersion,
		Vmlinuz: tree.Vmlinuz, Vmlinux: vmlinux, ModulesDir: tree.ModulesDir}, nil
}

// BuildFloor builds the benchmark floor image: the same kernel Build
// would use with opts, and an initrd holding only init, a static program
// that powers the machine off (cmd/vc-floor-init), and /dev/console.
// opts.Agent, Modules and Busybox are ignored.
func BuildFloor(ctx context.Context, opts Options, init string) (*Image, error) {
	opts = opts.withDefaults()
	if opts.Initrd != "" {
		return nil, errors.New("guestimage: a floor image builds its own initrd; Options.Initrd must be empty")
	}
	if init == "" {
		return nil, errors.New("guestimage: no floor init binary given (build cmd/vc-floor-init)")
	}
	if err := checkStaticExecutable("floor init", init); err != nil {
		return nil, err
	}
	p := plan{kind: KindFloor, init: init, modules: []string{}}
	return withFreshLists(ctx, opts, func() (*Image, error) { return build(ctx, opts, p) })
}

// plan is what build puts in the initrd.
type plan struct {
	kind    Kind
	init    string
	modules []string
	busybox string
}

// kernelSource is where the kernel and its modules come from.
type kernelSource struct {
	vmlinuz, modulesDir, version string
	pkg                          debPackage
}

func build(ctx context.Context, opts Options, p plan) (*Image, error) {
	log := opts.Logger
	if err := opts.Compression.valid(); err != nil {
		return nil, err
	}
	if err := opts.KernelFlavor.valid(); err != nil {
		return nil, err
	}
	if opts.KernelFlavor == KernelMinimal && opts.KernelPackage != "" && opts.Kernel == "" {
		return nil, fmt.Errorf("kernel package %s is the generic flavor's, not the minimal one's", opts.KernelPackage)
	}
	ki := keyInputs{Format: formatVersion, Kind: p.kind, Modules: p.modules, Compression: opts.Compression}
	var err error
	if ki.InitSHA256, err = fileSHA256(p.init); err != nil {
		return nil, fmt.Errorf("%s binary: %w", p.kind, err)
	}
	if p.busybox != "" {
		if ki.BusyboxSHA256, err = fileSHA256(p.busybox); err != nil {
			return nil, fmt.Errorf("busybox: %w", err)
		}
	}

	// Identify the kernel cheaply first, so that an image already built
	// is found without downloading or unpacking anything.
	var (
		src     kernelSource
		db      *moduleDB
		minimal bool // src is the minimal kernel, built
	)
	if opts.Kernel != "" {
		if ki.KernelSHA256, err = fileSHA256(opts.Kernel); err != nil {
			return nil, fmt.Errorf("kernel (Options.Kernel): %w", err)
		}
		src = kernelSource{vmlinuz: opts.Kernel, version: kernelVersionOf(opts.Kernel)}
		if opts.KernelModulesDir != "" && len(p.modules) > 0 {
			if db, err = userModuleDB(opts.KernelModulesDir); err != nil {
				return nil, err
			}
			src.modulesDir, src.version = db.dir, filepath.Base(db.dir)
			order, _, err := db.resolve(p.modules)
			if err != nil {
				return nil, err
			}
			for _, m := range order {
				sum, err := fileSHA256(filepath.Join(db.dir, m))
				if err != nil {
					return nil, fmt.Errorf("module: %w", err)
				}
				ki.ModuleFiles = append(ki.ModuleFiles, m+"="+sum)
			}
		} else if len(p.modules) > 0 {
			log.Info("user kernel without Options.KernelModulesDir: no modules will be loaded, the kernel must have virtio, 9p and vsock built in", "kernel", opts.Kernel)
			p.modules = nil
			ki.Modules = nil
		}
	} else if opts.KernelFlavor == KernelMinimal {
		// Everything the agent needs is built in: no modules.
		bk, err := BuildKernel(ctx, opts)
		if err != nil {
			return nil, err
		}
		if ki.KernelSHA256, err = fileSHA256(bk.Vmlinux); err != nil {
			return nil, fmt.Errorf("built kernel: %w", err)
		}
		ki.KernelFlavor, ki.KernelPackage, ki.KernelPackageVersion = KernelMinimal, bk.SourcePackage, bk.SourceVersion
		src = kernelSource{vmlinuz: bk.Vmlinux, version: bk.Version, pkg: debPackage{Name: bk.SourcePackage, Version: bk.SourceVersion}}
		minimal = true
		p.modules, ki.Modules = nil, nil
	} else {
		src.pkg, err = resolveKernelPackage(ctx, opts.CacheDir, opts.KernelPackage, log)
		if err != nil {
			return nil, err
		}
		ki.KernelPackage, ki.KernelPackageVersion, ki.KernelPackageSHA256 = src.pkg.Name, src.pkg.Version, src.pkg.SHA256
	}
	key := ki.key()
	final := filepath.Join(opts.Root, dirName(key))
	if _, err := os.Stat(final); err == nil {
		img, err := Load(final)
		if err == nil && img.Key == key {
			log.Debug("guest image up to date", "dir", final)
			return img, nil
		}
		if err == nil {
			err = fmt.Errorf("key %s is not %s", img.Key, key)
		}
		log.Warn("replacing unusable image directory", "dir", final, "err", err)
		if err := os.RemoveAll(final); err != nil {
			return nil, err
		}
	}

	start := time.Now()
	kernelFile := KernelFile
	if minimal {
		kernelFile = VmlinuxFile
	} else if src.pkg.Name != "" {
		k, err := unpackedKernel(ctx, opts.CacheDir, src.pkg, log)
		if err != nil {
			return nil, err
		}
		// Boot the uncompressed kernel: decompressing is slow under TCG.
		src.vmlinuz, src.modulesDir, src.version, kernelFile = k.Vmlinux, k.ModulesDir, k.Version, VmlinuxFile
		if len(p.modules) > 0 {
			if db, err = loadModuleDB(k.ModulesDir); err != nil {
				return nil, err
			}
		}
	}
	m := Manifest{
		Key:                  key,
		Kind:                 p.kind,
		KernelVersion:        src.version,
		KernelPackage:        src.pkg.Name,
		KernelPackageVersion: src.pkg.Version,
		KernelFlavor:         flavorOf(opts),
		KernelPath:           kernelFile,
		InitrdPath:           InitrdFile,
		Compression:          opts.Compression,
		Busybox:              p.busybox != "",
	}
	if p.kind == KindAgent {
		m.AgentSHA256 = ki.InitSHA256
	} else {
		m.InitSHA256 = ki.InitSHA256
	}
	spec := initrdSpec{Init: p.init, KernelVersion: src.version, ModulesDir: src.modulesDir, Busybox: p.busybox, Compression: opts.Compression}
	if db != nil {
		spec.Modules, m.Builtin, err = db.resolve(p.modules)
		if err != nil {
			return nil, err
		}
		if len(m.Builtin) > 0 {
			log.Debug("modules built into the kernel", "modules", m.Builtin)
		}
	}

	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("image root: %w", err)
	}
	tmp, err := os.MkdirTemp(opts.Root, ".build-"+dirName(key)+"-")
	if err != nil {
		return nil, fmt.Errorf("image root: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := linkOrCopy(src.vmlinuz, filepath.Join(tmp, kernelFile)); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(tmp, InitrdFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	m.Modules, m.CpioSize, err = writeInitrd(ctx, f, spec)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	for _, mod := range spec.Modules {
		if st, err := os.Stat(filepath.Join(src.modulesDir, mod)); err == nil {
			m.ModulesSize += st.Size()
		}
	}
	if st, err := os.Stat(p.init); err == nil && p.kind == KindAgent {
		m.AgentSize = st.Size()
	}
	m.Created = time.Now().UTC()
	if err := writeManifest(tmp, &m); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another build of the same inputs may have finished first.
		if img, lerr := Load(final); lerr == nil && img.Key == key {
			return img, nil
		}
		return nil, fmt.Errorf("install image %s: %w", final, err)
	}
	img, err := Load(final)
	if err != nil {
		return nil, err
	}
	log.Info("guest image built", "dir", final, "kind", p.kind, "kernel", src.version,
		"initrd_size", img.InitrdSize, "modules", len(img.Modules), "took", time.Since(start).Round(time.Millisecond))
	return img, nil
}

// userModuleDB loads the modules database of a user's
// lib/modules/<version> directory, running depmod when it has none and
// the directory is laid out as <base>/lib/modules/<version>.
func userModuleDB(dir string) (*moduleDB, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("kernel modules (Options.KernelModulesDir): %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err != nil {
		parent := filepath.Dir(dir)
		if filepath.Base(parent) != "modules" || filepath.Base(filepath.Dir(parent)) != "lib" {
			return nil, fmt.Errorf("kernel modules %s have no modules.dep and are not under lib/modules/ for depmod -b to make one: %w", dir, err)
		}
		if err := depmod(filepath.Dir(filepath.Dir(parent)), filepath.Base(dir)); err != nil {
			return nil, err
		}
	}
	return loadModuleDB(dir)
}

// recordCustom records a user's kernel and initrd as an image.
func recordCustom(opts Options) (*Image, error) {
	if opts.Kernel == "" {
		return nil, errors.New("guestimage: Options.Initrd needs Options.Kernel")
	}
	var paths [2]string
	var sums [2]string
	for i, p := range []string{opts.Kernel, opts.Initrd} {
		what := [2]string{"kernel (Options.Kernel)", "initrd (Options.Initrd)"}[i]
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		st, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if !st.Mode().IsRegular() || st.Size() == 0 {
			return nil, fmt.Errorf("%s %s is not a non-empty regular file", what, abs)
		}
		if sums[i], err = fileSHA256(abs); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		paths[i] = abs
	}
	key := keyInputs{Format: formatVersion, Kind: KindCustom, KernelSHA256: sums[0], InitrdSHA256: sums[1]}.key()
	final := filepath.Join(opts.Root, dirName(key))
	if img, err := Load(final); err == nil && img.Key == key && img.Kernel == paths[0] && img.Initrd == paths[1] {
		return img, nil
	}
	m := Manifest{
		Key:           key,
		Kind:          KindCustom,
		Created:       time.Now().UTC(),
		KernelVersion: kernelVersionOf(paths[0]),
		KernelPath:    paths[0],
		InitrdPath:    paths[1],
	}
	if err := os.MkdirAll(opts.Root, 0o755); err != nil {
		return nil, fmt.Errorf("image root: %w", err)
	}
	tmp, err := os.MkdirTemp(opts.Root, ".build-"+dirName(key)+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := writeManifest(tmp, &m); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	_ = os.RemoveAll(final) // same content at other paths: re-record
	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("install image %s: %w", final, err)
	}
	return Load(final)
}

func writeManifest(dir string, m *Manifest) error {
	for _, f := range []struct {
		p    string
		size *int64
	}{{m.KernelPath, &m.KernelSize}, {m.InitrdPath, &m.InitrdSize}} {
		p := f.p
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		*f.size = st.Size()
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o644)
}

// Load reads the image in dir, checking that its files are there with
// the sizes its manifest records.
func Load(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	img := &Image{Dir: dir, Manifest: m}
	for _, f := range []struct {
		name string
		dst  *string
		size int64
	}{{m.KernelPath, &img.Kernel, m.KernelSize}, {m.InitrdPath, &img.Initrd, m.InitrdSize}} {
		p := f.name
		if p == "" {
			return nil, fmt.Errorf("%s: manifest names no kernel or initrd", dir)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", dir, err)
		}
		if st.Size() != f.size {
			return nil, fmt.Errorf("image %s: %s is %d bytes, manifest says %d", dir, p, st.Size(), f.size)
		}
		*f.dst = p
	}
	return img, nil
}

// List returns the images under root, newest first. Directories that are
// not valid images are left out.
func List(root string) ([]Image, error) {
	if root == "" {
		root = DefaultRoot
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var imgs []Image
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		img, err := Load(filepath.Join(root, e.Name()))
		if err != nil {
			continue
		}
		imgs = append(imgs, *img)
	}
	slices.SortFunc(imgs, func(a, b Image) int { return b.Created.Compare(a.Created) })
	return imgs, nil
}

// Remove deletes an image directory (a user's own kernel and initrd are
// left alone).
func Remove(img *Image) error {
	if _, err := os.Stat(filepath.Join(img.Dir, ManifestFile)); err != nil {
		return fmt.Errorf("%s is not an image directory: %w", img.Dir, err)
	}
	return os.RemoveAll(img.Dir)
}
