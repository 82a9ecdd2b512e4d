package guest

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// setDateTime sets the guest's clock.
func setDateTime(sec, usec int64) error {
	if sec < 0 {
		return invalid("Sec", "%d is negative", sec)
	}
	if usec < 0 || usec > 999999 {
		return invalid("Usec", "%d is out of range 0-999999", usec)
	}
	tv := unix.Timeval{Sec: sec, Usec: usec}
	if err := unix.Settimeofday(&tv); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("settimeofday: %w: %w", err, errdefs.ErrPermissionDenied)
		}
		return fmt.Errorf("settimeofday %d.%06d: %w", sec, usec, err)
	}
	return nil
}
