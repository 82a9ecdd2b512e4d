package vc

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

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
