package guestimage

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeModules writes a lib/modules/<version> tree with depmod's files and
// returns its path. Module files contain their own path.
func fakeModules(t *testing.T, base string, dep, builtin, softdep, alias string) string {
	t.Helper()
	dir := filepath.Join(base, "lib", "modules", "9.9.9-test")
	write := func(name, content string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.dep", dep)
	write("modules.builtin", builtin)
	write("modules.softdep", softdep)
	write("modules.alias", alias)
	for _, line := range strings.Split(dep, "\n") {
		if mod, _, ok := strings.Cut(line, ":"); ok && !strings.HasSuffix(mod, ".xz") && !strings.HasSuffix(mod, ".gz") {
			write(mod, "module "+mod)
		}
	}
	return dir
}

const testDep = `kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/fs/a.ko: kernel/fs/b.ko
kernel/fs/b.ko: kernel/fs/a.ko
kernel/fs/needs_missing.ko: kernel/fs/missing.ko
`

func testDB(t *testing.T) *moduleDB {
	dir := fakeModules(t, t.TempDir(), testDep,
		"kernel/fs/overlayfs/overlay.ko\nkernel/net/unix/unix.ko\n",
		"# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep jbd2 pre: crypto-crc32c post: nothing\nsoftdep virtio_console pre: not-there\n",
		"alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n")
	db, err := loadModuleDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func index(order []string, mod string) int {
	return slices.IndexFunc(order, func(p string) bool { return modName(p) == mod })
}

func TestResolveModules(t *testing.T) {
	db := testDB(t)
	order, builtin, err := db.resolve([]string{"virtio_pci", "virtio-console", "virtio_rng", "overlay", "ext4"})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(order)
	if !slices.Equal(builtin, []string{"overlay"}) {
		t.Errorf("builtin = %v, want [overlay]", builtin)
	}
	want := []string{"virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci", "virtio_console", "virtio_rng",
		"crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"}
	var got []string
	for _, p := range order {
		got = append(got, modName(p))
	}
	if !slices.Equal(got, want) {
		t.Errorf("order = %v\nwant    %v", got, want)
	}
	if order[index(order, "virtio_rng")] != "kernel/drivers/char/hw_random/virtio-rng.ko" {
		t.Errorf("virtio_rng resolved to %s", order[index(order, "virtio_rng")])
	}

	// Asking for the alias picks the generic implementation too.
	order, _, err = db.resolve([]string{"crypto-crc32c"})
	if err != nil || len(order) != 1 || modName(order[0]) != "crc32c_generic" {
		t.Errorf("crypto-crc32c resolved to %v, %v", order, err)
	}

	_, _, err = db.resolve([]string{"virtio", "nosuchmod"})
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "nosuchmod") {
		t.Errorf("unknown module: err = %v", err)
	}
	_, _, err = db.resolve([]string{"needs_missing"})
	if !errors.Is(err, ErrModuleNotFound) || !strings.Contains(err.Error(), "missing (needed by needs_missing)") {
		t.Errorf("missing dependency: err = %v", err)
	}
	if _, _, err = db.resolve([]string{"a"}); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("cycle: err = %v", err)
	}
}
