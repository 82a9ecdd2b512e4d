// Package swap turns a block device into swap space for the guest: it
// formats it (with mkswap, or by writing the swap header itself when the
// guest has no mkswap) and enables it with swapon(2).
package swap

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The system the package works on; tests replace these.
var (
	lookPath = exec.LookPath
	swaponFn = func(path string) error {
		p, err := unix.BytePtrFromString(path)
		if err != nil {
			return err
		}
		_, _, errno := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0)
		if errno != 0 {
			return errno
		}
		return nil
	}
)

// minPages is the smallest swap area mkswap makes.
const minPages = 10

// Runner runs a command to completion (the agent's reaper.Run).
type Runner func(*exec.Cmd) error

// Enable formats the block device dev as swap, unless it is swap already,
// and enables it. It refuses a device that holds a filesystem or a
// partition table: formatting the wrong disk must not happen.
func Enable(dev string, run Runner) error {
	f, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dev, err)
	}
	size, err := deviceSize(f)
	if err != nil {
		f.Close()
		return err
	}
	pageSize := os.Getpagesize()
	if size/int64(pageSize) < minPages {
		f.Close()
		return fmt.Errorf("%s has %d bytes, less than the %d pages swap needs: %w", dev, size, minPages, errdefs.ErrFailedPrecondition)
	}
	head := make([]byte, min(size, 128<<10))
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return fmt.Errorf("read %s: %w", dev, err)
	}
	sig := Signature(head, pageSize)
	switch {
	case sig == "swap":
		slog.Info("device is swap already", "device", dev)
	case sig != "":
		f.Close()
		return fmt.Errorf("%s holds %s; refusing to make it swap: %w", dev, sig, errdefs.ErrFailedPrecondition)
	default:
		if mkswap, err := lookPath("mkswap"); err == nil {
			f.Close()
			var out bytes.Buffer
			cmd := exec.Command(mkswap, dev)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := run(cmd); err != nil {
				return fmt.Errorf("mkswap %s: %w: %s", dev, err, bytes.TrimSpace(out.Bytes()))
			}
			f = nil
		} else {
			var uuid [16]byte
			rand.Read(uuid[:])
			uuid[6] = uuid[6]&0x0f | 0x40 // version 4
			uuid[8] = uuid[8]&0x3f | 0x80 // variant 10
			if err := WriteHeader(f, size, pageSize, uuid); err != nil {
				f.Close()
				return fmt.Errorf("write swap header on %s: %w", dev, err)
			}
		}
	}
	if f != nil {
		f.Close()
	}
	if err := swaponFn(dev); err != nil {
		return fmt.Errorf("swapon %s: %w", dev, err)
	}
	slog.Info("swap enabled", "device", dev, "bytes", size)
	return nil
}

// deviceSize is the size of a block device, or of a regular file.
func deviceSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("%s is not a block device: %w", f.Name(), errdefs.ErrFailedPrecondition)
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("size of %s: %w", f.Name(), errno)
	}
	return int64(size), nil
}

// WriteHeader writes a version 1 swap header ("SWAPSPACE2", as mkswap
// does) for a swap area of size bytes at the start of f: the first page,
// zeroed, holding version, last page, no bad pages, and uuid.
func WriteHeader(f *os.File, size int64, pageSize int, uuid [16]byte) error {
	pages := size / int64(pageSize)
	if pages < minPages {
		return fmt.Errorf("%d bytes is less than %d pages: %w", size, minPages, errdefs.ErrFailedPrecondition)
	}
	if pages-1 > 0xffffffff {
		pages = 0xffffffff + 1
	}
	page := make([]byte, pageSize)
	// struct swap_header_v1_2 follows 1024 bytes of boot block.
	binary.LittleEndian.PutUint32(page[1024:], 1)               // version
	binary.LittleEndian.PutUint32(page[1028:], uint32(pages-1)) // last_page
	binary.LittleEndian.PutUint32(page[1032:], 0)               // nr_badpages
	copy(page[1036:1052], uuid[:])                              // sws_uuid
	copy(page[pageSize-10:], "SWAPSPACE2")                      // magic
	if _, err := f.WriteAt(page, 0); err != nil {
		return err
	}
	return f.Sync()
}

type magic struct {
	off  int
	data string
	what string
}

var magics = []magic{
	{0, "XFSB", "an xfs filesystem"},
	{0, "hsqs", "a squashfs filesystem"},
	{0, "LUKS\xba\xbe", "a LUKS volume"},
	{512, "EFI PART", "a GPT partition table"},
	{1080, "\x53\xef", "an ext2/3/4 filesystem"},
	{1024, "\xe2\xe1\xf5\xe0", "an erofs filesystem"},
	{0x10040, "_BHRfS_M", "a btrfs filesystem"},
	{32769, "CD001", "an iso9660 filesystem"},
	{510, "\x55\xaa", "a partition table or boot sector"},
}

// Signature says what the first bytes of a device hold: "swap", a
// description of a filesystem or partition table, or "" when it finds
// nothing it knows.
func Signature(head []byte, pageSize int) string {
	for _, ps := range []int{pageSize, 4096, 8192, 16384, 65536} {
		if ps >= 10 && len(head) >= ps {
			switch string(head[ps-10 : ps]) {
			case "SWAPSPACE2", "SWAP-SPACE":
				return "swap"
			}
		}
	}
	for _, m := range magics {
		if len(head) >= m.off+len(m.data) && string(head[m.off:m.off+len(m.data)]) == m.data {
			return m.what
		}
	}
	return ""
}
