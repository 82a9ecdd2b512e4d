package vc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
)

// The guest's reports of a command libcontainer's init could not look up
// are told apart as docker tells them (127, 126); anything else is left.
func TestCommandError(t *testing.T) {
	for msg, want := range map[string]error{
		`start container init: exec: "nope": executable file not found in $PATH`:     ErrCommandNotFound,
		`start container init: exec: "/nope": stat /nope: no such file or directory`: ErrCommandNotFound,
		`exec: "/etc/passwd/x": stat /etc/passwd/x: not a directory`:                 ErrCommandNotFound,
		`start container init: exec: "/etc": is a directory`:                         ErrCommandNotRunnable,
		`start container init: exec: "/etc/passwd": permission denied`:               ErrCommandNotRunnable,
		`exec: "a \"quoted\" name": permission denied`:                               ErrCommandNotRunnable,
		// Not the command's: a mount's source, a rootfs.
		`storages[0]: mount /run/x: no such file or directory`:    nil,
		`open /run/vc/x/config.json: permission denied`:           nil,
		`exec: "sh": stat sh: input/output error`:                 nil,
		`container c: rootfs: stat /x: no such file or directory`: nil,
	} {
		base := fmt.Errorf("%s: %w", msg, errdefs.ErrUnknown)
		err := commandError(base)
		if !errors.Is(err, base) {
			t.Errorf("%q: the error %v no longer wraps the agent's", msg, err)
		}
		for _, sentinel := range []error{ErrCommandNotFound, ErrCommandNotRunnable} {
			if got := errors.Is(err, sentinel); got != (sentinel == want) {
				t.Errorf("%q: errors.Is(%v) = %v", msg, sentinel, got)
			}
		}
	}
	if commandError(nil) != nil {
		t.Error("commandError(nil) != nil")
	}
}
