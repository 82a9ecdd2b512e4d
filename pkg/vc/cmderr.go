package vc

import (
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	pb "github.com/virtcontainers/vc/api/agent"
)

// Errors of a process's command that could not run, as docker tells them
// apart by exit code: CreateContainer, Container.Start and Container.Exec
// return them typed (errors.Is), with the guest's message kept. The agent
// sends them typed (pb.ErrCommandNotFound, pb.ErrCommandNotRunnable: a
// status class and a reason, converted at the edge by pkg/agent); these
// are the same errors.
var (
	// ErrCommandNotFound: the command does not exist in the container
	// (docker's exit code 127); errdefs.IsNotFound too when the guest
	// reported it.
	ErrCommandNotFound = pb.ErrCommandNotFound
	// ErrCommandNotRunnable: the command exists but cannot be invoked:
	// a directory, a file without execute permission, arguments execve
	// would refuse (docker's 126).
	ErrCommandNotRunnable = pb.ErrCommandNotRunnable
)

// What execve(2) takes (fs/exec.c): one argument or variable of at most
// maxArgStrlen bytes with its NUL (MAX_ARG_STRLEN), and all of them with
// their pointers within a quarter of the stack's limit, at most 6 MiB and
// at least 128 KiB. A container's process has the guest's default stack
// limit, 8 MiB (so 2 MiB in all), unless its spec sets RLIMIT_STACK.
const (
	maxArgStrlen  = 32 * 4096
	defaultStack  = 8 << 20
	minArgMax     = 32 * 4096
	maxArgMax     = defaultStack / 4 * 3
	pointerLength = 8
)

// checkExecSize refuses a process whose arguments and environment execve
// would refuse with E2BIG: it could not be invoked (ErrCommandNotRunnable,
// docker's and a shell's 126), and the guest would only report it after
// the container started, as an exit status. field names the process.
func checkExecSize(field string, p *specs.Process) error {
	stack := uint64(defaultStack)
	for _, r := range p.Rlimits {
		if r.Type == "RLIMIT_STACK" {
			stack = r.Soft
		}
	}
	limit := min(max(stack/4, minArgMax), maxArgMax)
	total := uint64(len(p.Args)+len(p.Env)) * pointerLength
	for _, l := range []struct {
		name string
		s    []string
	}{{"args", p.Args}, {"env", p.Env}} {
		for i, s := range l.s {
			if len(s)+1 > maxArgStrlen {
				return fmt.Errorf("%s.%s[%d] (%.24q…): %d bytes, more than the %d the kernel takes for one: argument list too long: %w: %w",
					field, l.name, i, s, len(s)+1, maxArgStrlen, ErrCommandNotRunnable, errdefs.ErrInvalidArgument)
			}
			total += uint64(len(s)) + 1
		}
	}
	if total > limit {
		return fmt.Errorf("%s: arguments and environment of %d bytes, more than the %d the kernel takes (a quarter of the stack's limit): argument list too long: %w: %w",
			field, total, limit, ErrCommandNotRunnable, errdefs.ErrInvalidArgument)
	}
	return nil
}
