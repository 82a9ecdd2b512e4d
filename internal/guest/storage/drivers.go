package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/kmod"
	"github.com/virtcontainers/vc/internal/guest/pcipath"
)

// checkFstype refuses an fstype other than the driver's own.
func checkFstype(s *pb.Storage, want ...string) error {
	if s.Fstype == "" {
		return nil
	}
	for _, w := range want {
		if s.Fstype == w {
			return nil
		}
	}
	return invalid("fstype", "%s storage has fstype %s, not %q", s.Driver, want[0], s.Fstype)
}

// prepare9p: source is the mount tag of a virtio-9p device.
func prepare9p(_ context.Context, s *pb.Storage) (*spec, error) {
	if s.Source == "" {
		return nil, invalid("source", "9p storage needs the mount tag as source")
	}
	if err := checkFstype(s, "9p"); err != nil {
		return nil, err
	}
	o := ParseOptions(s.Options)
	o.Data = mergeData([]string{"trans=virtio", "version=9p2000.L", "msize=" + strconv.Itoa(Default9pMsize)}, o.Data)
	return &spec{source: s.Source, fstype: "9p", opts: o}, nil
}

// prepareVirtioFS: source is the tag of a virtio-fs device.
func prepareVirtioFS(_ context.Context, s *pb.Storage) (*spec, error) {
	if s.Source == "" {
		return nil, invalid("source", "virtio-fs storage needs the tag as source")
	}
	if err := checkFstype(s, "virtiofs"); err != nil {
		return nil, err
	}
	return &spec{source: s.Source, fstype: "virtiofs", opts: ParseOptions(s.Options)}, nil
}

// prepareBlk: source is a device node (/dev/vdb) or the PCI path of a
// virtio-blk device ("02/00"); it waits for the device to appear.
func prepareBlk(ctx context.Context, s *pb.Storage) (*spec, error) {
	if s.Fstype == "" {
		return nil, invalid("fstype", "blk storage needs the filesystem type")
	}
	if strings.ContainsAny(s.Fstype, ",/ \x00") {
		return nil, invalid("fstype", "bad filesystem type %q", s.Fstype)
	}
	// The disk may be hotplugged after boot: its driver loads on demand.
	if err := kmod.EnsureGroup("blk"); err != nil {
		return nil, err
	}
	dev, err := blockSource(ctx, s.Source)
	if err != nil {
		return nil, err
	}
	return &spec{source: dev, fstype: s.Fstype, opts: ParseOptions(s.Options)}, nil
}

func blockSource(ctx context.Context, source string) (string, error) {
	if source == "" {
		return "", invalid("source", "blk storage needs a device path or PCI path as source")
	}
	if !strings.HasPrefix(source, "/") {
		p, err := pcipath.Parse(source)
		if err != nil {
			return "", fmt.Errorf("source: %w", err)
		}
		dev, err := pcipath.BlockDevice(ctx, sysfsRoot, devRoot, p, deviceTimeout)
		if err != nil {
			return "", fmt.Errorf("source: %w", err)
		}
		return dev, nil
	}
	if filepath.Clean(source) != source {
		return "", invalid("source", "device path %q is not clean", source)
	}
	deadline := time.Now().Add(deviceTimeout)
	for {
		st, err := os.Stat(source)
		if err == nil {
			if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
				return "", fmt.Errorf("source: %s is not a block device: %w", source, errdefs.ErrFailedPrecondition)
			}
			return source, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("source: %w", err)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("source: device %s did not appear within %v: %w", source, deviceTimeout, errdefs.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("source: waiting for %s: %w", source, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// prepareEphemeral: a tmpfs. An "fsgid=N" option makes its root belong
// to group N, with the set-group-ID bit (Kata's form for fsGroup).
func prepareEphemeral(_ context.Context, s *pb.Storage) (*spec, error) {
	if err := checkFstype(s, "tmpfs"); err != nil {
		return nil, err
	}
	opts, gid, err := parseFSGid(s.Options)
	if err != nil {
		return nil, err
	}
	source := s.Source
	if source == "" {
		source = "tmpfs"
	}
	return &spec{source: source, fstype: "tmpfs", opts: ParseOptions(opts), fsgid: gid}, nil
}

// DefaultLocalMode is the mode of a local storage whose options set none.
const DefaultLocalMode = 0o755

// prepareLocal: a directory at the mount point; options "mode=0777"
// (octal) and "fsgid=N" are the only ones.
func prepareLocal(_ context.Context, s *pb.Storage) (*spec, error) {
	opts, gid, err := parseFSGid(s.Options)
	if err != nil {
		return nil, err
	}
	sp := &spec{source: s.Source, dir: true, mode: DefaultLocalMode, fsgid: gid}
	for _, o := range opts {
		v, ok := strings.CutPrefix(o, "mode=")
		if !ok {
			return nil, invalid("options", "local storage takes only mode= and fsgid=, not %q", o)
		}
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, invalid("options", "bad mode %q (want octal, at most 7777)", v)
		}
		sp.mode = fileMode(uint32(m))
	}
	return sp, nil
}

// fileMode turns a mode_t permission into an os.FileMode.
func fileMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
