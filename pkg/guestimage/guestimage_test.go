package guestimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/internal/testutil"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// changedCopy copies the static binary src to dir with one byte appended:
// still a valid executable, different content.
func changedCopy(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(src)+".changed")
	if err := os.WriteFile(p, append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildUserKernel builds around a kernel and modules tree of the
// user's (fakes: nothing boots here) and checks the initrd's content, the
// cache and the manifest.
func TestBuildUserKernel(t *testing.T) {
	agent := testutil.AgentBinary(t)
	base := t.TempDir()
	modDir := fakeModules(t, base, testDep+"kernel/fs/zipped.ko.gz: kernel/fs/xzed.ko.xz\nkernel/fs/xzed.ko.xz:\n", "kernel/fs/overlayfs/overlay.ko\n", "softdep ext4 pre: crypto-crc32c\n", "alias crypto-crc32c crc32c_generic\n")
	// Compressed modules are stored decompressed.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("gzipped module"))
	zw.Close()
	if err := os.WriteFile(filepath.Join(modDir, "kernel/fs/zipped.ko.gz"), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	haveXz := exec.Command("sh", "-c", "printf 'xz module' | xz -c --check=crc32 > "+filepath.Join(modDir, "kernel/fs/xzed.ko.xz")).Run() == nil
	kernel := filepath.Join(base, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("not really a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	mods := []string{"virtio_console", "ext4", "overlay"}
	if haveXz {
		mods = append(mods, "zipped")
	}
	opts := Options{
		Root:             filepath.Join(base, "images"),
		CacheDir:         filepath.Join(base, "cache"),
		Agent:            agent,
		Kernel:           kernel,
		KernelModulesDir: modDir,
		Modules:          mods,
		Logger:           testLogger(t),
	}
	ctx := context.Background()
	img, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.Kind != KindAgent || img.KernelVersion != "9.9.9-test" || img.Compression != CompressLZ4 {
		t.Errorf("manifest: %+v", img.Manifest)
	}
	if !slices.Equal(img.Builtin, []string{"overlay"}) {
		t.Errorf("builtin = %v", img.Builtin)
	}
	files := readInitrd(t, img)
	agentBytes, _ := os.ReadFile(agent)
	if e := files["init"]; e.mode != cpioRegular|0o755 || !bytes.Equal(e.data, agentBytes) {
		t.Errorf("/init is not the agent (mode %o, %d bytes)", e.mode, len(e.data))
	}
	if e := files["dev/console"]; e.mode != cpioChar|0o600 || e.major != 5 || e.minor != 1 {
		t.Errorf("/dev/console: %+v", e)
	}
	if e := files["dev/null"]; e.mode != cpioChar|0o666 || e.major != 1 || e.minor != 3 {
		t.Errorf("/dev/null: %+v", e)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc"} {
		if files[d].mode&0o170000 != cpioDir {
			t.Errorf("no directory /%s", d)
		}
	}
	if files["tmp"].mode&0o7777 != 0o1777 {
		t.Errorf("/tmp mode %o", files["tmp"].mode)
	}
	list := strings.Fields(string(files["etc/vc-agent/modules"].data))
	if !slices.Equal(list, img.Modules) {
		t.Errorf("/etc/vc-agent/modules = %v, manifest says %v", list, img.Modules)
	}
	want := []string{"virtio_ring", "virtio", "virtio_console", "crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}
	if haveXz {
		want = append(want, "xzed", "zipped")
	}
	var got []string
	for _, m := range list {
		if !strings.HasPrefix(m, "9.9.9-test/kernel/") || !strings.HasSuffix(m, ".ko") {
			t.Errorf("module list entry %q is not <version>/kernel/....ko", m)
		}
		got = append(got, modName(m))
		e, ok := files["lib/modules/"+m]
		if !ok {
			t.Errorf("%s listed but not in the initrd", m)
			continue
		}
		switch modName(m) {
		case "zipped":
			if string(e.data) != "gzipped module" {
				t.Errorf("zipped.ko holds %q", e.data)
			}
		case "xzed":
			if string(e.data) != "xz module" {
				t.Errorf("xzed.ko holds %q", e.data)
			}
		default:
			if string(e.data) != "module kernel/"+strings.TrimPrefix(m, "9.9.9-test/kernel/") {
				t.Errorf("%s holds %q", m, e.data)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("load order %v\nwant       %v", got, want)
	}
	if _, ok := files["bin/busybox"]; ok {
		t.Error("busybox in the initrd though not asked for")
	}

	// Same inputs: same image, not rebuilt.
	again, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Dir != img.Dir || !again.Created.Equal(img.Created) {
		t.Errorf("second build made %s (created %v), first %s (created %v)", again.Dir, again.Created, img.Dir, img.Created)
	}
	// A changed agent, or another option, makes another image.
	o2 := opts
	o2.Agent = changedCopy(t, agent, base)
	other, err := Build(ctx, o2)
	if err != nil {
		t.Fatal(err)
	}
	if other.Dir == img.Dir || other.AgentSHA256 == img.AgentSHA256 {
		t.Errorf("changed agent reused %s", img.Dir)
	}
	o3 := opts
	o3.Compression = CompressNone
	plain, err := Build(ctx, o3)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Dir == img.Dir || plain.InitrdSize != plain.CpioSize {
		t.Errorf("uncompressed image: dir %s, initrd %d bytes, cpio %d", plain.Dir, plain.InitrdSize, plain.CpioSize)
	}
	if len(readInitrd(t, plain)) != len(files) {
		t.Error("uncompressed initrd differs from the gzip one")
	}
	imgs, err := List(opts.Root)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 3 {
		t.Errorf("List found %d images, want 3", len(imgs))
	}
	if err := Remove(plain); err != nil {
		t.Fatal(err)
	}
	if imgs, _ := List(opts.Root); len(imgs) != 2 {
		t.Errorf("after Remove, List found %d images, want 2", len(imgs))
	}
	// No temporary directories are left behind.
	ents, _ := os.ReadDir(opts.Root)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("leftover %s in the image root", e.Name())
		}
	}
	// A damaged image is rebuilt.
	if err := os.Truncate(img.Initrd, 10); err != nil {
		t.Fatal(err)
	}
	fixed, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if fixed.Dir != img.Dir || fixed.InitrdSize != img.InitrdSize {
		t.Errorf("damaged image not rebuilt: %+v", fixed.Manifest)
	}
}

func TestBuildBusybox(t *testing.T) {
	if _, err := os.Stat(DefaultBusybox); err != nil {
		testenv.Skipf(t, "no static busybox (busybox-static) at %s: %v", DefaultBusybox, err)
	}
	base := t.TempDir()
	kernel := filepath.Join(base, "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	img, err := Build(context.Background(), Options{
		Root: base, Agent: testutil.AgentBinary(t), Kernel: kernel, Busybox: true, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	files := readInitrd(t, img)
	if e := files["bin/busybox"]; e.mode != cpioRegular|0o755 || len(e.data) < 100000 {
		t.Errorf("bin/busybox: mode %o, %d bytes", e.mode, len(e.data))
	}
	if e := files["bin/sh"]; e.mode&0o170000 != cpioSymlink || string(e.data) != "busybox" {
		t.Errorf("bin/sh: %+v", e)
	}
	if _, ok := files["etc/vc-agent/modules"]; ok || len(img.Modules) != 0 {
		t.Errorf("modules in an image for a kernel without KernelModulesDir: %v", img.Modules)
	}
}

func TestBuildErrors(t *testing.T) {
	base := t.TempDir()
	kernel := filepath.Join(base, "vmlinuz")
	os.WriteFile(kernel, []byte("k"), 0o644)
	ctx := context.Background()
	agent := testutil.AgentBinary(t)
	for _, tc := range []struct {
		name string
		opts Options
		want string
		is   error
	}{
		{"no agent", Options{Kernel: kernel}, "no agent binary", nil},
		{"missing agent", Options{Kernel: kernel, Agent: filepath.Join(base, "nope")}, "agent binary: stat " + filepath.Join(base, "nope"), os.ErrNotExist},
		{"dynamic agent", Options{Kernel: kernel, Agent: "/bin/true"}, "dynamically linked", nil},
		{"not elf", Options{Kernel: kernel, Agent: kernel}, "not an ELF", nil},
		{"compression", Options{Kernel: kernel, Agent: agent, Compression: "brotli"}, `unknown initrd compression "brotli"`, nil},
		{"missing kernel", Options{Kernel: filepath.Join(base, "nokernel"), Agent: agent}, "kernel (Options.Kernel)", os.ErrNotExist},
		{"initrd without kernel", Options{Initrd: kernel}, "needs Options.Kernel", nil},
		{"missing initrd", Options{Kernel: kernel, Initrd: filepath.Join(base, "noinitrd")}, "initrd (Options.Initrd)", os.ErrNotExist},
		{"missing module", Options{Kernel: kernel, Agent: agent, KernelModulesDir: fakeModules(t, t.TempDir(), testDep, "", "", ""), Modules: []string{"virtio", "nosuch"}}, "nosuch", ErrModuleNotFound},
		{"missing modules dir", Options{Kernel: kernel, Agent: agent, KernelModulesDir: filepath.Join(base, "nomods"), Modules: []string{"virtio"}}, "Options.KernelModulesDir", os.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Root = filepath.Join(base, "images")
			tc.opts.Logger = testLogger(t)
			_, err := Build(ctx, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v, want it to say %q (is %v)", err, tc.want, tc.is)
			}
			t.Log(err)
		})
	}
	if _, err := BuildFloor(ctx, Options{Kernel: kernel, Root: base}, ""); err == nil || !strings.Contains(err.Error(), "vc-floor-init") {
		t.Errorf("floor without init: %v", err)
	}
}

func TestRecordCustom(t *testing.T) {
	base := t.TempDir()
	kernel, initrd := filepath.Join(base, "k"), filepath.Join(base, "i")
	os.WriteFile(kernel, []byte("kernel"), 0o644)
	os.WriteFile(initrd, []byte("initrd"), 0o644)
	opts := Options{Root: filepath.Join(base, "images"), Kernel: kernel, Initrd: initrd}
	img, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.Kind != KindCustom || img.Kernel != kernel || img.Initrd != initrd || img.KernelSize != 6 || img.InitrdSize != 6 {
		t.Errorf("custom image: %+v", img)
	}
	again, err := Build(context.Background(), opts)
	if err != nil || again.Dir != img.Dir || !again.Created.Equal(img.Created) {
		t.Errorf("second record: %+v, %v", again, err)
	}
	// A user's file that changes size makes the record invalid.
	os.WriteFile(initrd, []byte("initrd, longer"), 0o644)
	if _, err := Load(img.Dir); err == nil {
		t.Error("Load accepted an image whose initrd changed size")
	}
}

// kernelOptions are options for the real Debian generic kernel, cached where the
// VM tests cache it.
func kernelOptions(t *testing.T) Options {
	t.Helper()
	for _, tool := range []string{"apt-cache", "apt-get", "dpkg-deb", "depmod"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skipf(t, "needs %s to fetch Debian's kernel: %v", tool, err)
		}
	}
	cache := os.Getenv("VC_CACHE_DIR")
	if cache == "" {
		cache = DefaultCacheDir
		if os.Geteuid() != 0 {
			testenv.Skipf(t, "needs root to write the kernel cache %s (or set VC_CACHE_DIR)", cache)
		}
	}
	return Options{Root: t.TempDir(), CacheDir: cache, Logger: testLogger(t), KernelFlavor: KernelGeneric}
}

// TestBuildDebian builds with Debian's generic kernel (downloaded once
// into the cache) and checks the module set and the image cache.
func TestBuildDebian(t *testing.T) {
	opts := kernelOptions(t)
	opts.Agent = testutil.AgentBinary(t)
	ctx := context.Background()
	img, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s from %s %s: vmlinuz %d bytes, initrd %d bytes (cpio %d), %d modules (%d bytes)",
		img.KernelVersion, img.KernelPackage, img.KernelPackageVersion, img.KernelSize, img.InitrdSize, img.CpioSize, len(img.Modules), img.ModulesSize)
	if !strings.HasPrefix(img.KernelPackage, "linux-image-") || strings.Contains(img.KernelPackage, "cloud") {
		t.Errorf("kernel package %q is not the generic flavour", img.KernelPackage)
	}
	// The image boots the uncompressed kernel: an ELF that names its
	// version in its banner.
	kb, err := os.ReadFile(img.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(kb, []byte("\x7fELF")) || !bytes.Contains(kb, []byte("Linux version "+img.KernelVersion+" ")) {
		t.Errorf("kernel %s is not the ELF vmlinux of %s", img.Kernel, img.KernelVersion)
	}
	// The order measured to work for virtio-serial and 9p (DESIGN.md),
	// and ext4's crc32c before it.
	for _, seq := range [][]string{
		{"virtio_ring", "virtio", "virtio_pci", "virtio_console"},
		{"virtio_pci_modern_dev", "virtio_pci"},
		{"virtio_pci_legacy_dev", "virtio_pci"},
		{"9pnet", "9pnet_virtio"},
		{"netfs", "fscache", "9p"},
		{"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"},
		{"failover", "net_failover", "virtio_net"},
		{"crc32c_generic", "jbd2", "ext4"},
		{"fuse", "virtiofs"},
	} {
		prev := -1
		for _, m := range seq {
			i := index(img.Modules, m)
			if i < 0 {
				t.Errorf("module %s missing from %v", m, img.Modules)
			} else if i < prev {
				t.Errorf("module %s loads before %s", m, seq)
			}
			prev = i
		}
	}
	files := readInitrd(t, img)
	for _, m := range img.Modules {
		e, ok := files["lib/modules/"+m]
		if !ok || !bytes.HasPrefix(e.data, []byte("\x7fELF")) {
			t.Errorf("module %s not in the initrd as an ELF object", m)
		}
	}

	// The second build finds the image; it must not rebuild.
	start := time.Now()
	again, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("second build: %v", took)
	if again.Dir != img.Dir || !again.Created.Equal(img.Created) {
		t.Errorf("second build made %s, first %s", again.Dir, img.Dir)
	}
	if took > 5*time.Second {
		t.Errorf("second build took %v: it should only hash the agent and ask apt-cache", took)
	}
	// A changed agent makes a new image, from the cached kernel.
	opts.Agent = changedCopy(t, opts.Agent, t.TempDir())
	start = time.Now()
	other, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build with a changed agent: %v", time.Since(start))
	if other.Dir == img.Dir || other.AgentSHA256 == img.AgentSHA256 {
		t.Errorf("changed agent gave the same image %s", other.Dir)
	}
	if other.KernelSize != img.KernelSize || !slices.Equal(other.Modules, img.Modules) {
		t.Error("changed agent changed the kernel or modules")
	}
}

func TestBuildFloorDebian(t *testing.T) {
	opts := kernelOptions(t)
	bin := filepath.Join(t.TempDir(), "vc-floor-init")
	cmd := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "./cmd/vc-floor-init")
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vc-floor-init: %v: %s", err, out)
	}
	img, err := BuildFloor(context.Background(), opts, bin)
	if err != nil {
		t.Fatal(err)
	}
	files := readInitrd(t, img)
	if img.Kind != KindFloor || len(img.Modules) != 0 || img.InitSHA256 == "" || img.AgentSHA256 != "" {
		t.Errorf("floor manifest: %+v", img.Manifest)
	}
	if _, ok := files["etc/vc-agent/modules"]; ok {
		t.Error("floor initrd has a module list")
	}
	if _, ok := files["dev/console"]; !ok {
		t.Error("floor initrd has no /dev/console")
	}
	t.Logf("floor: kernel %s, initrd %d bytes", img.KernelVersion, img.InitrdSize)
}

func TestBuildUnknownPackage(t *testing.T) {
	opts := kernelOptions(t)
	opts.Agent = testutil.AgentBinary(t)
	opts.KernelPackage = "linux-image-0.0.0-nosuch-amd64"
	_, err := Build(context.Background(), opts)
	if !errors.Is(err, ErrPackageNotFound) || !strings.Contains(err.Error(), opts.KernelPackage) {
		t.Fatalf("err = %v, want ErrPackageNotFound naming %s", err, opts.KernelPackage)
	}
	t.Log(err)
}
