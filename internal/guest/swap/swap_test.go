package swap

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/testenv"
)

func image(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestWriteHeader(t *testing.T) {
	p := image(t, 1<<20+100)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	uuid := [16]byte{1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16}
	if err := WriteHeader(f, 1<<20+100, 4096, uuid); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b[4096-10:4096]) != "SWAPSPACE2" {
		t.Fatalf("magic %q", b[4096-10:4096])
	}
	if v := binary.LittleEndian.Uint32(b[1024:]); v != 1 {
		t.Fatalf("version %d", v)
	}
	if v := binary.LittleEndian.Uint32(b[1028:]); v != 255 {
		t.Fatalf("last_page %d, want 255", v)
	}
	if string(b[1036:1052]) != string(uuid[:]) {
		t.Fatal("uuid not written")
	}
	if Signature(b, 4096) != "swap" {
		t.Fatal("Signature does not see the header it wrote")
	}
	if _, err := exec.LookPath("blkid"); err != nil {
		testenv.Skip(t, "blkid (util-linux) is not installed to check the header independently")
	}
	out, err := exec.Command("blkid", "-p", "-o", "export", p).Output()
	if err != nil {
		t.Fatalf("blkid: %v", err)
	}
	if !strings.Contains(string(out), "TYPE=swap") || !strings.Contains(string(out), "UUID=01020304-0506-4708-890a-0b0c0d0e0f10") {
		t.Fatalf("blkid says:\n%s", out)
	}
	if err := WriteHeader(f, 9*4096, 4096, uuid); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("WriteHeader on 9 pages = %v", err)
	}
}

func TestSignature(t *testing.T) {
	if s := Signature(make([]byte, 128<<10), 4096); s != "" {
		t.Fatalf("zeros: %q", s)
	}
	if s := Signature(nil, 4096); s != "" {
		t.Fatalf("nothing: %q", s)
	}
	b := make([]byte, 128<<10)
	copy(b[0x10040:], "_BHRfS_M")
	if s := Signature(b, 4096); !strings.Contains(s, "btrfs") {
		t.Fatalf("btrfs: %q", s)
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		testenv.Skip(t, "mkfs.ext4 (e2fsprogs) is not installed to make an ext4 image")
	}
	p := image(t, 4<<20)
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", p).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	head, _ := os.ReadFile(p)
	if s := Signature(head[:128<<10], 4096); !strings.Contains(s, "ext") {
		t.Fatalf("ext4: %q", s)
	}
}

// fakeSystem records swapon calls and picks whether mkswap exists.
func fakeSystem(t *testing.T, haveMkswap bool) *[]string {
	t.Helper()
	var swapons []string
	oldL, oldS := lookPath, swaponFn
	lookPath = func(name string) (string, error) {
		if haveMkswap {
			return exec.LookPath(name)
		}
		return "", exec.ErrNotFound
	}
	swaponFn = func(p string) error {
		swapons = append(swapons, p)
		return nil
	}
	t.Cleanup(func() { lookPath, swaponFn = oldL, oldS })
	return &swapons
}

func run(cmd *exec.Cmd) error { return cmd.Run() }

func TestEnableGoHeader(t *testing.T) {
	swapons := fakeSystem(t, false)
	p := image(t, 1<<20)
	if err := Enable(p, func(*exec.Cmd) error { t.Fatal("ran a command without mkswap"); return nil }); err != nil {
		t.Fatal(err)
	}
	head, _ := os.ReadFile(p)
	if Signature(head, os.Getpagesize()) != "swap" {
		t.Fatal("no swap header written")
	}
	if len(*swapons) != 1 || (*swapons)[0] != p {
		t.Fatalf("swapon calls %v", *swapons)
	}
}

func TestEnableMkswap(t *testing.T) {
	if _, err := exec.LookPath("mkswap"); err != nil {
		testenv.Skip(t, "mkswap (util-linux) is not installed")
	}
	swapons := fakeSystem(t, true)
	p := image(t, 1<<20)
	ran := false
	err := Enable(p, func(c *exec.Cmd) error {
		ran = true
		if filepath.Base(c.Path) != "mkswap" {
			t.Errorf("ran %s", c.Path)
		}
		return c.Run()
	})
	if err != nil || !ran {
		t.Fatalf("Enable = %v, ran mkswap %v", err, ran)
	}
	head, _ := os.ReadFile(p)
	if Signature(head, os.Getpagesize()) != "swap" || len(*swapons) != 1 {
		t.Fatal("mkswap did not make swap")
	}
	// Swap already: neither formatted again nor refused.
	if err := Enable(p, func(*exec.Cmd) error { t.Fatal("formatted swap again"); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestEnableRefuses(t *testing.T) {
	swapons := fakeSystem(t, false)
	small := image(t, 9*int64(os.Getpagesize()))
	if err := Enable(small, run); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Enable on a tiny device = %v", err)
	}
	fs := image(t, 1<<20)
	f, _ := os.OpenFile(fs, os.O_RDWR, 0)
	f.WriteAt([]byte("XFSB"), 0)
	f.Close()
	err := Enable(fs, run)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "xfs") {
		t.Fatalf("Enable on xfs = %v", err)
	}
	if b, _ := os.ReadFile(fs); string(b[:4]) != "XFSB" {
		t.Fatal("filesystem overwritten")
	}
	if err := Enable("/dev/null", run); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Enable on a character device = %v", err)
	}
	if err := Enable(filepath.Join(t.TempDir(), "none"), run); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Enable on nothing = %v", err)
	}
	if len(*swapons) != 0 {
		t.Fatalf("swapon called on refused devices: %v", *swapons)
	}
}
