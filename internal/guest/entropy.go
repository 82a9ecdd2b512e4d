package guest

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxSeed bounds ReseedRandomDev's data.
const maxSeed = 1 << 20

// reseedRandom adds data to the kernel's entropy pool, credited with
// RNDADDENTROPY on /dev/random; without the right to credit, it is still
// mixed in by writing it to /dev/urandom. Then it asks for the CRNG to be
// reseeded at once (RNDRESEEDCRNG): a VM resumed from a template starts
// with the template's CRNG state, which the kernel would otherwise only
// reseed from the pool on its own schedule (a second or more later), so
// VMs of one template could hand out the same random bytes until then.
func (a *Agent) reseedRandom(data []byte) error {
	if err := a.addToPool(data); err != nil {
		return err
	}
	if err := reseedCRNG(filepath.Join(a.misc.dev, "random")); err != nil {
		a.log.Warn("RNDRESEEDCRNG failed: the CRNG takes the new seed on its own schedule", "err", err)
	}
	return nil
}

func (a *Agent) addToPool(data []byte) error {
	if len(data) == 0 {
		return invalid("data", "empty")
	}
	if len(data) > maxSeed {
		return invalid("data", "%d bytes is more than the %d allowed", len(data), maxSeed)
	}
	err := addEntropy(filepath.Join(a.misc.dev, "random"), data)
	if err == nil {
		return nil
	}
	a.log.Debug("RNDADDENTROPY failed, writing to urandom", "err", err)
	f, werr := os.OpenFile(filepath.Join(a.misc.dev, "urandom"), os.O_WRONLY, 0)
	if werr == nil {
		_, werr = f.Write(data)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
	}
	if werr != nil {
		return fmt.Errorf("reseed: %w (and RNDADDENTROPY: %w)", werr, err)
	}
	return nil
}

// addEntropy passes data to RNDADDENTROPY, crediting 8 bits a byte:
// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }.
func addEntropy(dev string, data []byte) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := make([]byte, 8+len(data))
	binary.NativeEndian.PutUint32(info[0:], uint32(len(data)*8))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(data)))
	copy(info[8:], data)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", errno)
	}
	return nil
}

// reseedCRNG makes the kernel reseed its CRNG from the entropy pool now.
func reseedCRNG(dev string) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); errno != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", errno)
	}
	return nil
}
