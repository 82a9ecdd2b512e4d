package container

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
)

// libcontainer's reports of a command its init could not look up are
// typed as docker tells them apart (127, 126); anything else is left.
func TestCommandError(t *testing.T) {
	for msg, want := range map[string]error{
		`exec: "nope": executable file not found in $PATH`:                pb.ErrCommandNotFound,
		`exec: "/nope": stat /nope: no such file or directory`:            pb.ErrCommandNotFound,
		`exec: "/etc/passwd/x": stat /etc/passwd/x: not a directory`:      pb.ErrCommandNotFound,
		`unable to start container process: exec: "/etc": is a directory`: pb.ErrCommandNotRunnable,
		`exec: "/etc/passwd": permission denied`:                          pb.ErrCommandNotRunnable,
		`exec: "a \"quoted\" name": permission denied`:                    pb.ErrCommandNotRunnable,
		// Not the command's: a mount's source, a rootfs.
		`storages[0]: mount /run/x: no such file or directory`:    nil,
		`open /run/vc/x/config.json: permission denied`:           nil,
		`exec: "sh": stat sh: input/output error`:                 nil,
		`container c: rootfs: stat /x: no such file or directory`: nil,
	} {
		base := fmt.Errorf("%s: %w", msg, errdefs.ErrUnknown)
		err := commandError(base)
		if !errors.Is(err, base) {
			t.Errorf("%q: the error %v no longer wraps libcontainer's", msg, err)
		}
		for _, sentinel := range []error{pb.ErrCommandNotFound, pb.ErrCommandNotRunnable} {
			if got := errors.Is(err, sentinel); got != (sentinel == want) {
				t.Errorf("%q: errors.Is(%v) = %v", msg, sentinel, got)
			}
		}
	}
	if commandError(nil) != nil {
		t.Error("commandError(nil) != nil")
	}
}
