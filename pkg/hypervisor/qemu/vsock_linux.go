package qemu

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vhostVsockDevice is the host's vhost-vsock; a variable for tests.
var vhostVsockDevice = "/dev/vhost-vsock"

// VHOST_VSOCK_SET_GUEST_CID = _IOW(VHOST_VIRTIO 0xAF, 0x60, __u64)
const vhostVsockSetGuestCID = 1<<30 | 8<<16 | 0xAF<<8 | 0x60

// firstGuestCID is the lowest CID a guest may have (0-2 are reserved for
// the hypervisor, local and the host).
const firstGuestCID = 3

// haveVhostVsock tells whether the host offers vhost-vsock.
func haveVhostVsock() bool {
	return unix.Access(vhostVsockDevice, unix.R_OK|unix.W_OK) == nil
}

// allocateCID opens /dev/vhost-vsock and claims the first free guest CID
// on it. The open file holds the CID: QEMU gets it as vhostfd, so no other
// VM can take the CID between the choice and the boot.
func allocateCID() (*os.File, uint32, error) {
	f, err := os.OpenFile(vhostVsockDevice, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("vsock: %w", err)
	}
	for cid := uint64(firstGuestCID); cid < firstGuestCID+65536; cid++ {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), vhostVsockSetGuestCID, uintptr(unsafe.Pointer(&cid)))
		switch {
		case errno == 0:
			return f, uint32(cid), nil
		case errors.Is(errno, unix.EADDRINUSE):
			continue
		default:
			f.Close()
			return nil, 0, fmt.Errorf("vsock: set guest cid %d: %w", cid, errno)
		}
	}
	f.Close()
	return nil, 0, fmt.Errorf("vsock: no free guest cid")
}
