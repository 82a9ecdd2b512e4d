package hypervisor

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"

	"github.com/containerd/errdefs"
)

// FSKind is a shared file system transport.
type FSKind string

const (
	FS9P       FSKind = "9p"        // virtio-9p, built into QEMU
	FSVirtioFS FSKind = "virtio-fs" // needs a virtiofsd
)

// SharedFS shares a host directory with the guest. The guest mounts it by
// tag (for 9p: mount -t 9p -o trans=virtio,version=9p2000.L TAG DIR).
type SharedFS struct {
	Tag      string
	HostPath string
	ReadOnly bool
	Kind     FSKind // default FS9P
}

// Disk is a block device backed by a host file or block device.
type Disk struct {
	// ID names the device (required); RemoveDisk takes it.
	ID string
	// Path is the image file or block device on the host.
	Path string
	// Format is "raw" (default) or "qcow2".
	Format   string
	ReadOnly bool
	// Serial is what the guest sees as the disk's serial number
	// (/sys/block/vdX/serial); default the ID. At most 20 bytes.
	Serial string
	// Direct opens the image with O_DIRECT (cache=none); default off, so
	// that images on tmpfs work.
	Direct bool
}

// NIC is a network interface backed by a tap or macvtap device.
type NIC struct {
	// ID names the device (required); RemoveNIC takes it.
	ID string
	// TapName is a tap device the hypervisor opens by name, or empty when
	// TapFiles are given.
	TapName string
	// TapFiles are open tap or macvtap (/dev/tapN) file descriptors, one
	// per queue. The caller keeps ownership and may close them once the
	// NIC is added (after Start for a NIC given before it).
	TapFiles []*os.File
	// MAC is the guest side address (required): the guest finds the NIC
	// by it.
	MAC net.HardwareAddr
	// MTU, when non-zero, is advertised to the guest driver.
	MTU int
}

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$`)

// Validate checks fs and fills in defaults.
func (fs *SharedFS) Validate() error {
	if !tagPattern.MatchString(fs.Tag) {
		return fmt.Errorf("shared fs tag %q: want 1-31 letters, digits, '.', '_' or '-': %w", fs.Tag, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(fs.HostPath) {
		return fmt.Errorf("shared fs %s: host path %q is not absolute: %w", fs.Tag, fs.HostPath, errdefs.ErrInvalidArgument)
	}
	switch fs.Kind {
	case "":
		fs.Kind = FS9P
	case FS9P, FSVirtioFS:
	default:
		return fmt.Errorf("shared fs %s: kind %q: %w", fs.Tag, fs.Kind, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Validate checks d and fills in defaults.
func (d *Disk) Validate() error {
	if !idPattern.MatchString(d.ID) {
		return fmt.Errorf("disk id %q: want letters, digits, '.', '_' or '-': %w", d.ID, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(d.Path) {
		return fmt.Errorf("disk %s: path %q is not absolute: %w", d.ID, d.Path, errdefs.ErrInvalidArgument)
	}
	switch d.Format {
	case "":
		d.Format = "raw"
	case "raw", "qcow2":
	default:
		return fmt.Errorf("disk %s: format %q: want raw or qcow2: %w", d.ID, d.Format, errdefs.ErrInvalidArgument)
	}
	if d.Serial == "" {
		d.Serial = d.ID
	}
	if len(d.Serial) > 20 || !idPattern.MatchString(d.Serial) {
		return fmt.Errorf("disk %s: serial %q: want at most 20 letters, digits, '.', '_' or '-': %w", d.ID, d.Serial, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Validate checks n.
func (n *NIC) Validate() error {
	if !idPattern.MatchString(n.ID) {
		return fmt.Errorf("nic id %q: want letters, digits, '.', '_' or '-': %w", n.ID, errdefs.ErrInvalidArgument)
	}
	if (n.TapName == "") == (len(n.TapFiles) == 0) {
		return fmt.Errorf("nic %s: want a tap name or tap files, exactly one of them: %w", n.ID, errdefs.ErrInvalidArgument)
	}
	if n.TapName != "" && (len(n.TapName) > 15 || !idPattern.MatchString(n.TapName)) {
		return fmt.Errorf("nic %s: tap name %q: %w", n.ID, n.TapName, errdefs.ErrInvalidArgument)
	}
	for i, f := range n.TapFiles {
		if f == nil {
			return fmt.Errorf("nic %s: tap file %d is nil: %w", n.ID, i, errdefs.ErrInvalidArgument)
		}
	}
	if len(n.MAC) != 6 {
		return fmt.Errorf("nic %s: MAC %q is not a 48-bit address: %w", n.ID, n.MAC, errdefs.ErrInvalidArgument)
	}
	if n.MAC[0]&1 != 0 {
		return fmt.Errorf("nic %s: MAC %s is a multicast address: %w", n.ID, n.MAC, errdefs.ErrInvalidArgument)
	}
	if n.MTU < 0 || n.MTU > 65535 || (n.MTU != 0 && n.MTU < 68) {
		return fmt.Errorf("nic %s: MTU %d: %w", n.ID, n.MTU, errdefs.ErrInvalidArgument)
	}
	return nil
}
