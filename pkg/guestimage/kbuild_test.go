package guestimage

import (
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/internal/testutil"
)

// An option kconfig dropped (its dependency off) is named, not lost.
func TestCheckConfig(t *testing.T) {
	config := filepath.Join(t.TempDir(), ".config")
	os.WriteFile(config, []byte("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=64\n"), 0o644)
	if err := checkConfig(config, []byte("# comment\nCONFIG_A=y\n\nCONFIG_C=64\n")); err != nil {
		t.Errorf("all set: %v", err)
	}
	err := checkConfig(config, []byte("CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=32\n"))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_B=y, CONFIG_C=32") {
		t.Errorf("err %v, want CONFIG_B=y and CONFIG_C=32 named", err)
	}
	if err := checkConfig(config, []byte("# CONFIG_B is not set\n")); err != nil {
		t.Errorf("an option off that is off: %v", err)
	}
	if err := checkConfig(config, []byte("# CONFIG_A is not set\n")); err == nil {
		t.Errorf("an option off that is on: accepted")
	}
}

func TestKernelFlavorDefaults(t *testing.T) {
	if f := (Options{}).withDefaults().KernelFlavor; f != KernelMinimal {
		t.Errorf("default flavor %q, want minimal", f)
	}
	if f := (Options{KernelPackage: "linux-image-6.1.0-1-amd64"}).withDefaults().KernelFlavor; f != KernelGeneric {
		t.Errorf("flavor with a kernel package %q, want generic", f)
	}
	if err := KernelFlavor("tiny").valid(); err == nil || !strings.Contains(err.Error(), `"tiny"`) {
		t.Errorf("flavor tiny: %v", err)
	}
	_, err := Build(context.Background(), Options{Agent: testutil.AgentBinary(t), KernelFlavor: KernelMinimal, KernelPackage: "linux-image-6.1.0-1-amd64", Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "generic") {
		t.Errorf("minimal with a kernel package: %v, want refused", err)
	}
}

// The default image boots the minimal kernel, built from Debian's
// linux-source once into the cache: an uncompressed ELF kernel with the
// fragment's options and no modules in the initrd.
func TestBuildMinimal(t *testing.T) {
	opts := kernelOptions(t)
	opts.KernelFlavor = KernelMinimal
	opts.Agent = testutil.AgentBinary(t)
	img, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("minimal kernel %s from %s %s: %d bytes, initrd %d bytes", img.KernelVersion, img.KernelPackage, img.KernelPackageVersion, img.KernelSize, img.InitrdSize)
	if img.KernelFlavor != KernelMinimal || !strings.HasPrefix(img.KernelPackage, "linux-source-") || len(img.Modules) != 0 {
		t.Errorf("flavor %q package %q modules %v: want minimal, linux-source-*, none", img.KernelFlavor, img.KernelPackage, img.Modules)
	}
	f, err := elf.Open(img.Kernel)
	if err != nil {
		t.Fatalf("kernel is not an ELF (booted through PVH): %v", err)
	}
	f.Close()
	bk, err := BuildKernel(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkConfig(filepath.Join(filepath.Dir(bk.Vmlinux), "config"), KernelConfig); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(filepath.Join(filepath.Dir(bk.Vmlinux), "config")); !strings.Contains(string(b), "# CONFIG_MODULES is not set") {
		t.Errorf("the minimal kernel has module support")
	}
}
