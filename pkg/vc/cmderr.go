package vc

import (
	"errors"
	"fmt"
	"regexp"
)

// Errors of a process's command that could not run, as docker tells them
// apart by exit code: CreateContainer, Container.Start and Container.Exec
// wrap them (errors.Is), with the guest's message kept.
var (
	// ErrCommandNotFound: the command does not exist in the container
	// (docker's exit code 127).
	ErrCommandNotFound = errors.New("command not found")
	// ErrCommandNotRunnable: the command exists but cannot be invoked:
	// a directory, a file without execute permission (docker's 126).
	ErrCommandNotRunnable = errors.New("command cannot be invoked")
)

// notFound and notRunnable are how libcontainer's init reports that its
// command failed exec.LookPath, before executing it, so that the failure
// is the create's: os/exec's Error, `exec: "NAME": REASON`, REASON being
// exec.ErrNotFound's for a name looked up in PATH, the stat error for a
// path, or what findExecutable refused. The init is another process (in
// the guest): only its message crosses to the agent, and the agent's to
// here.
var (
	notFound    = regexp.MustCompile(`exec: "(?:[^"\\]|\\.)*": (?:executable file not found in \$PATH|stat .*?: (?:no such file or directory|not a directory))`)
	notRunnable = regexp.MustCompile(`exec: "(?:[^"\\]|\\.)*": (?:is a directory|permission denied)`)
)

// commandError wraps err with ErrCommandNotFound or ErrCommandNotRunnable
// when it is the guest's report that the command could not be looked up.
func commandError(err error) error {
	switch {
	case err == nil:
		return nil
	case notFound.MatchString(err.Error()):
		return fmt.Errorf("%w: %w", err, ErrCommandNotFound)
	case notRunnable.MatchString(err.Error()):
		return fmt.Errorf("%w: %w", err, ErrCommandNotRunnable)
	}
	return err
}
