package container

import (
	"fmt"
	"regexp"

	pb "github.com/virtcontainers/vc/api/agent"
)

// notFound and notRunnable are how libcontainer's init reports that its
// command failed exec.LookPath, before executing it, so that the failure
// is the create's (or the exec's): os/exec's Error, `exec: "NAME":
// REASON`, REASON being exec.ErrNotFound's for a name looked up in PATH,
// the stat error for a path, or what findExecutable refused. The init is
// another process: only its message reaches the agent, which links the
// libcontainer that wrote it. This is the one place the message is read:
// the agent sends the error typed (pb.ToGRPC), and the host maps the type
// (docker's exit codes 127 and 126), never the text.
var (
	notFound    = regexp.MustCompile(`exec: "(?:[^"\\]|\\.)*": (?:executable file not found in \$PATH|stat .*?: (?:no such file or directory|not a directory))`)
	notRunnable = regexp.MustCompile(`exec: "(?:[^"\\]|\\.)*": (?:is a directory|permission denied)`)
)

// commandError wraps err with pb.ErrCommandNotFound or
// pb.ErrCommandNotRunnable when it is libcontainer's report that the
// command could not be looked up.
func commandError(err error) error {
	switch {
	case err == nil:
		return nil
	case notFound.MatchString(err.Error()):
		return fmt.Errorf("%w: %w", err, pb.ErrCommandNotFound)
	case notRunnable.MatchString(err.Error()):
		return fmt.Errorf("%w: %w", err, pb.ErrCommandNotRunnable)
	}
	return err
}
