package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/guestimage"
)

// The real-VM tests boot Debian's generic kernel with a tiny initrd whose
// /init is testdata/testinit. The kernel is $VC_TEST_KERNEL (with
// $VC_TEST_MODULES, its lib/modules/VERSION directory, when virtio is not
// built in), or the one the guest image builder fetches into its cache,
// which `vc image build` shares. The initrd is built by the image builder
// too, with the modules below and their dependencies.

// testModules are what the test guest loads: virtio-serial, blk, net, 9p,
// the power button.
var testModules = []string{
	"virtio_pci", "virtio_console", "virtio_blk", "virtio_net", "9p", "9pnet_virtio", "button", "evdev",
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
	vmlinuxErr error

	initrdOnce sync.Once
	initrdPath string
	initrdDir  string // removed by TestMain
	initrdErr  error
)

// findTestKernel finds or fetches a kernel; it fails the test (never
// skips) when none can be had.
func findTestKernel(t testing.TB) testKernel {
	t.Helper()
	kernelOnce.Do(func() { kernel, kernelErr = locateKernel() })
	if kernelErr != nil {
		t.Fatalf("no guest kernel for the real-VM tests: %v", kernelErr)
	}
	if vmlinuxErr != nil {
		t.Logf("booting the compressed kernel (slower): no vmlinux: %v", vmlinuxErr)
	}
	return kernel
}

func locateKernel() (testKernel, error) {
	if k := os.Getenv("VC_TEST_KERNEL"); k != "" {
		tk := testKernel{vmlinuz: k, modules: os.Getenv("VC_TEST_MODULES")}
		out := filepath.Join(os.TempDir(), "vc-test-vmlinux", filepath.Base(k))
		if vmlinuxErr = guestimage.ExtractVmlinux(k, out); vmlinuxErr == nil {
			tk.vmlinux = out
		}
		return tk, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := guestimage.FetchKernel(ctx, guestimage.Options{})
	if err != nil {
		return testKernel{}, err
	}
	return testKernel{vmlinuz: k.Vmlinuz, vmlinux: k.Vmlinux, modules: k.ModulesDir}, nil
}

// testInitrd builds (once per test binary) the initrd: testinit as /init
// and the modules it loads from /etc/vc-agent/modules, as the agent does.
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
	initrdDir = dir
	bin := filepath.Join(dir, "testinit")
	_, self, _, _ := runtime.Caller(0)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./testdata/testinit")
	cmd.Dir = filepath.Dir(self)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testinit: %w: %s", err, out)
	}
	// Debian's generic kernel: the driver's tests load their modules.
	opts := guestimage.Options{Root: filepath.Join(dir, "images"), Agent: bin, Modules: testModules, KernelFlavor: guestimage.KernelGeneric}
	if os.Getenv("VC_TEST_KERNEL") != "" {
		opts.Kernel, opts.KernelModulesDir = k.vmlinuz, k.modules
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	img, err := guestimage.Build(ctx, opts)
	if err != nil {
		return "", err
	}
	return img.Initrd, nil
}
