package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/guestimage"
)

// The real-VM tests boot Debian's generic kernel with a tiny initrd whose
// /init is testdata/testinit. The kernel comes from, in order:
//   - $VC_TEST_KERNEL (with $VC_TEST_MODULES, the lib/modules/VERSION
//     directory, when virtio is not built in),
//   - the guest image builder's cache, /var/cache/vc/kernels/*,
//   - this package's own cache, /var/tmp/vc-test-kernel, filled with
//     apt-get download of linux-image-amd64's dependency and dpkg-deb -x.

// testModules is the load order for the test guest: virtio-serial, blk,
// net, 9p, the power button.
var testModules = []string{
	"virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio", "virtio_pci",
	"virtio_console", "virtio_blk", "failover", "net_failover", "virtio_net",
	"9pnet", "9pnet_virtio", "netfs", "fscache", "9p", "button", "evdev",
}

type testKernel struct {
	vmlinuz string
	modules string // lib/modules/VERSION, or "" when everything is built in
	// vmlinux is the uncompressed ELF kernel (booted through its PVH
	// entry, which spares TCG the in-guest decompression: about half the
	// boot), or "" when it could not be extracted.
	vmlinux string
}

// fast returns the kernel that boots fastest.
func (k testKernel) fast() string {
	if k.vmlinux != "" {
		return k.vmlinux
	}
	return k.vmlinuz
}

var (
	kernelOnce sync.Once
	kernel     testKernel
	kernelErr  error

	initrdOnce sync.Once
	initrdPath string
	initrdErr  error
)

const testKernelCache = "/var/tmp/vc-test-kernel"

// findTestKernel finds or fetches a kernel; it fails the test (never
// skips) when none can be had.
func findTestKernel(t testing.TB) testKernel {
	t.Helper()
	kernelOnce.Do(func() {
		kernel, kernelErr = locateKernel()
		if kernelErr == nil {
			var err error
			if kernel.vmlinux, err = extractVmlinux(kernel.vmlinuz); err != nil {
				vmlinuxErr = err
			}
		}
	})
	if kernelErr != nil {
		t.Fatalf("no guest kernel for the real-VM tests: %v", kernelErr)
	}
	if vmlinuxErr != nil {
		t.Logf("booting the compressed kernel (slower): no vmlinux: %v", vmlinuxErr)
	}
	return kernel
}

var vmlinuxErr error

// extractVmlinux unpacks the ELF kernel from an XZ- or zstd-compressed
// bzImage, cached beside the test kernel cache.
func extractVmlinux(bz string) (string, error) {
	st, err := os.Stat(bz)
	if err != nil {
		return "", err
	}
	out := filepath.Join(testKernelCache, "vmlinux", fmt.Sprintf("%s-%d-%d", filepath.Base(bz), st.Size(), st.ModTime().Unix()))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	return out, guestimage.ExtractVmlinux(bz, out)
}

func locateKernel() (testKernel, error) {
	if k := os.Getenv("VC_TEST_KERNEL"); k != "" {
		return testKernel{vmlinuz: k, modules: os.Getenv("VC_TEST_MODULES")}, nil
	}
	for _, root := range []string{"/var/cache/vc/kernels", testKernelCache} {
		if k, ok := kernelIn(root); ok {
			return k, nil
		}
	}
	if err := fetchKernel(testKernelCache); err != nil {
		return testKernel{}, err
	}
	if k, ok := kernelIn(testKernelCache); ok {
		return k, nil
	}
	return testKernel{}, fmt.Errorf("fetched a kernel package into %s but found no boot/vmlinuz-* with its modules", testKernelCache)
}

// kernelIn finds DIR/*/boot/vmlinuz-V with DIR/*/lib/modules/V beside it.
func kernelIn(root string) (testKernel, bool) {
	matches, _ := filepath.Glob(filepath.Join(root, "*", "boot", "vmlinuz-*"))
	for _, m := range matches {
		if rel, _ := filepath.Rel(root, m); strings.HasPrefix(rel, ".") {
			continue // being unpacked
		}
		ver := strings.TrimPrefix(filepath.Base(m), "vmlinuz-")
		mods := filepath.Join(filepath.Dir(filepath.Dir(m)), "lib", "modules", ver)
		if st, err := os.Stat(mods); err == nil && st.IsDir() {
			return testKernel{vmlinuz: m, modules: mods}, true
		}
	}
	return testKernel{}, false
}

func fetchKernel(cache string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pkg, out := kernelPackage(ctx)
	if pkg == "" {
		// A machine whose package lists were never fetched.
		if uout, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get update: %w: %s", err, uout)
		}
		pkg, out = kernelPackage(ctx)
	}
	if pkg == "" {
		return fmt.Errorf("apt-cache depends linux-image-amd64 names no linux-image package:\n%s", out)
	}
	dl := filepath.Join(cache, "deb")
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, pkg+"_*.deb"))
	if len(debs) == 0 {
		return fmt.Errorf("apt-get download %s left no .deb in %s", pkg, dl)
	}
	tmp, err := os.MkdirTemp(cache, ".unpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, out)
	}
	if err := os.Rename(tmp, filepath.Join(cache, pkg)); err != nil {
		if _, serr := os.Stat(filepath.Join(cache, pkg, "boot")); serr == nil {
			return nil // another run unpacked it meanwhile
		}
		return err
	}
	return nil
}

// kernelPackage resolves linux-image-amd64 to the versioned package it
// depends on; out is apt-cache's output for errors.
func kernelPackage(ctx context.Context) (pkg string, out []byte) {
	out, _ = exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return strings.TrimSpace(dep), out
		}
	}
	return "", out
}

// testInitrd builds (once per test binary) the initrd: testinit as /init,
// /dev/console, the modules and /modules.list.
func testInitrd(t testing.TB, k testKernel) string {
	t.Helper()
	initrdOnce.Do(func() { initrdPath, initrdErr = buildInitrd(k) })
	if initrdErr != nil {
		t.Fatalf("test initrd: %v", initrdErr)
	}
	return initrdPath
}

func buildInitrd(k testKernel) (string, error) {
	dir, err := os.MkdirTemp("", "vc-qemu-test-initrd-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "testinit")
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./testdata/testinit")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testinit: %w: %s", err, out)
	}
	initBytes, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	w := newCpioWriter(&buf)
	w.dir("dev")
	w.charDev("dev/console", 5, 1)
	w.file("init", initBytes, 0o755)
	if k.modules != "" {
		w.dir("modules")
		var list []string
		for _, m := range testModules {
			path, err := findModule(k.modules, m)
			if err != nil {
				return "", err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return "", err
			}
			name := "modules/" + filepath.Base(path)
			w.file(name, b, 0o644)
			list = append(list, "/"+name)
		}
		w.file("modules.list", []byte(strings.Join(list, "\n")+"\n"), 0o644)
	}
	if err := w.close(); err != nil {
		return "", err
	}
	out := filepath.Join(dir, "initrd.cpio")
	return out, os.WriteFile(out, buf.Bytes(), 0o644)
}

// findModule finds NAME.ko (with '-' and '_' alike) under dir/kernel.
func findModule(dir, name string) (string, error) {
	norm := func(s string) string { return strings.ReplaceAll(s, "-", "_") }
	var found string
	filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && norm(strings.TrimSuffix(d.Name(), ".ko")) == norm(name) {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("module %s not found (uncompressed .ko) under %s", name, dir)
	}
	return found, nil
}

// cpioWriter writes a "newc" cpio archive, the initramfs format.
type cpioWriter struct {
	w   io.Writer
	n   int64
	ino int
	err error
}

func newCpioWriter(w io.Writer) *cpioWriter { return &cpioWriter{w: w, ino: 1} }

func (c *cpioWriter) entry(name string, mode uint32, data []byte, rmajor, rminor int) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string)                         { c.entry(name, 0o040755, nil, 0, 0) }
func (c *cpioWriter) file(name string, b []byte, perm uint32) { c.entry(name, 0o100000|perm, b, 0, 0) }
func (c *cpioWriter) charDev(name string, major, minor int) {
	c.entry(name, 0o020600, nil, major, minor)
}

func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, nil, 0, 0)
	return c.err
}
