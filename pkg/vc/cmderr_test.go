package vc

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// A process execve would refuse (E2BIG) is refused before anything starts,
// as one that cannot be invoked.
func TestCheckExecSize(t *testing.T) {
	big := strings.Repeat("x", 200<<10)
	for name, tc := range map[string]struct {
		p    specs.Process
		want string
	}{
		"fits":           {specs.Process{Args: []string{"true"}, Env: []string{"A=" + strings.Repeat("x", 100<<10)}}, ""},
		"one too long":   {specs.Process{Args: []string{"true"}, Env: []string{"PATH=/bin", "BIG=" + big}}, `p.env[1] ("BIG=xxxxxxxxxxxxxxxxxxxx"…): 204805 bytes, more than the 131072 the kernel takes for one: argument list too long`},
		"arg too long":   {specs.Process{Args: []string{"echo", big}}, "p.args[1]"},
		"all too long":   {specs.Process{Args: []string{"true"}, Env: slices.Repeat([]string{"A=" + strings.Repeat("x", 100<<10)}, 21)}, "p: arguments and environment of 2150644 bytes, more than the 2097152 the kernel takes"},
		"a larger stack": {specs.Process{Args: []string{"true"}, Env: slices.Repeat([]string{"A=" + strings.Repeat("x", 100<<10)}, 21), Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_STACK", Soft: 16 << 20, Hard: 16 << 20}}}, ""},
	} {
		err := checkExecSize("p", &tc.p)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrCommandNotRunnable) || !errdefs.IsInvalidArgument(err)):
			t.Errorf("%s: %v; want %q, ErrCommandNotRunnable and InvalidArgument", name, err, tc.want)
		}
	}
}
