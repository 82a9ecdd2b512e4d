// Package volume reports the usage of the volumes mounted in the guest
// and grows their filesystems after the host has grown their devices.
package volume

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mountinfo"
)

// The system the package works on; tests replace these.
var (
	lookPath      = exec.LookPath
	mountinfoPath = mountinfo.Self
)

const field = "volume_guest_path"

// CheckPath checks that p is absolute and clean and exists.
func CheckPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s: empty: %w", field, errdefs.ErrInvalidArgument)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%s: %q is not absolute: %w", field, p, errdefs.ErrInvalidArgument)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%s: %q is not clean: %w", field, p, errdefs.ErrInvalidArgument)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%s: contains a NUL byte: %w", field, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %s does not exist: %w", field, p, errdefs.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// Stats reports the bytes and inodes used and available on the
// filesystem holding p, as CSI's NodeGetVolumeStats does.
func Stats(p string) (*pb.VolumeStatsResponse, error) {
	if err := CheckPath(p); err != nil {
		return nil, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return &pb.VolumeStatsResponse{VolumeCondition: &pb.VolumeCondition{Abnormal: true, Message: err.Error()}},
			fmt.Errorf("%s: statfs %s: %w", field, p, err)
	}
	bs := uint64(st.Bsize)
	if st.Frsize > 0 {
		bs = uint64(st.Frsize)
	}
	return &pb.VolumeStatsResponse{
		Usage: []*pb.VolumeUsage{
			{
				Unit:      pb.VolumeUsage_BYTES,
				Total:     st.Blocks * bs,
				Available: st.Bavail * bs,
				Used:      (st.Blocks - st.Bfree) * bs,
			},
			{
				Unit:      pb.VolumeUsage_INODES,
				Total:     st.Files,
				Available: st.Ffree,
				Used:      st.Files - st.Ffree,
			},
		},
		VolumeCondition: &pb.VolumeCondition{Abnormal: false, Message: "OK"},
	}, nil
}

// Runner runs a command to completion (the agent's reaper.Run).
type Runner func(*exec.Cmd) error

// Resize grows the filesystem mounted at p to fill its device: ext2/3/4
// through the kernel's online resize (EXT4_IOC_RESIZE_FS, so the guest
// needs no e2fsprogs; resize2fs where the kernel lacks it), xfs with
// xfs_growfs. size, when not 0, is the size the host gave the device; a
// device still smaller is an error. It fails with ErrFailedPrecondition
// naming the tool when a tool is needed and the guest lacks it.
func Resize(p string, size uint64, run Runner) error {
	if err := CheckPath(p); err != nil {
		return err
	}
	infos, err := mountinfo.Read(mountinfoPath)
	if err != nil {
		return err
	}
	m, ok := mountinfo.Lookup(infos, p)
	if !ok {
		return fmt.Errorf("%s: %s is not a mount point: %w", field, p, errdefs.ErrFailedPrecondition)
	}
	var tool string
	var args []string
	switch m.FSType {
	case "ext2", "ext3", "ext4":
		tool, args = "resize2fs", []string{m.Source}
	case "xfs":
		tool, args = "xfs_growfs", []string{p}
	default:
		return fmt.Errorf("%s: %s holds a %s filesystem, which cannot be resized: %w", field, p, m.FSType, errdefs.ErrFailedPrecondition)
	}
	if size > 0 {
		devSize, err := blockSize(m.Source)
		if err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
		if devSize < size {
			return fmt.Errorf("size: device %s has %d bytes, less than the %d asked: %w", m.Source, devSize, size, errdefs.ErrFailedPrecondition)
		}
	}
	if tool == "resize2fs" {
		err := growExt4(p, m.Source, size)
		if !errors.Is(err, errNoIoctl) {
			return err
		}
	}
	bin, err := lookPath(tool)
	if err != nil {
		return fmt.Errorf("%s: not found in the guest, cannot resize %s: %w", tool, p, errdefs.ErrFailedPrecondition)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := run(cmd); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// blockSize is the size in bytes of the block device at dev.
func blockSize(dev string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("size of %s: %w", dev, errno)
	}
	return size, nil
}

// ext4IOCResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow the
// mounted filesystem to the given number of blocks.
const ext4IOCResizeFS = 0x40086610

var errNoIoctl = errors.New("no online resize ioctl")

// growExt4 grows the ext2/3/4 filesystem mounted at p to size bytes (0:
// all of dev) through the kernel, as resize2fs does for a mounted
// filesystem. errNoIoctl: not an ext filesystem the kernel resizes.
func growExt4(p, dev string, size uint64) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("%s: statfs %s: %w", field, p, err)
	}
	if st.Type != unix.EXT4_SUPER_MAGIC || st.Bsize <= 0 {
		return errNoIoctl
	}
	if size == 0 {
		if size, err = blockSize(dev); err != nil {
			return fmt.Errorf("%s: %w", field, err)
		}
	}
	blocks := size / uint64(st.Bsize)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ext4IOCResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		if errno == unix.ENOTTY || errno == unix.EOPNOTSUPP {
			return errNoIoctl
		}
		if errno == unix.EINVAL && blocks < st.Blocks {
			return fmt.Errorf("size: %d bytes is less than the filesystem at %s has; it can only grow: %w", size, p, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("grow the filesystem at %s to %d blocks of %d bytes: %w", p, blocks, st.Bsize, errno)
	}
	return nil
}
