package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Runner runs a command to completion and returns its standard output.
// The agent's reaper is one: every child of the agent must be started
// through it (see package reaper).
type Runner interface {
	Output(cmd *exec.Cmd) ([]byte, error)
}

// DefaultPath is searched for the iptables tools when PATH is unset, as
// it is for a guest's PID 1 started by the kernel.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// IPTables saves and restores the netfilter rules of the agent's network
// namespace with iptables-save and iptables-restore (ip6tables-save and
// ip6tables-restore for IPv6), as Kata's agent does.
type IPTables struct {
	Runner Runner
	// Path is the list of directories searched for the tools; empty
	// means $PATH, or DefaultPath when that is empty too.
	Path string
}

// Save returns what iptables-save (ip6tables-save) prints.
func (t IPTables) Save(ctx context.Context, ipv6 bool) ([]byte, error) {
	tool := "iptables-save"
	if ipv6 {
		tool = "ip6tables-save"
	}
	bin, err := t.lookPath(tool)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin)
	out, err := t.Runner.Output(cmd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", tool, withStderr(err), errdefs.ErrInternal)
	}
	return out, nil
}

// Restore feeds data to iptables-restore (ip6tables-restore) and returns
// what it prints. Rules it refuses are reported as InvalidArgument.
func (t IPTables) Restore(ctx context.Context, ipv6 bool, data []byte) ([]byte, error) {
	tool := "iptables-restore"
	if ipv6 {
		tool = "ip6tables-restore"
	}
	bin, err := t.lookPath(tool)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := t.Runner.Output(cmd)
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil, fmt.Errorf("data: %s refused the rules: %w: %s: %w",
				tool, err, strings.TrimSpace(stderr.String()), errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%s: %w: %w", tool, err, errdefs.ErrInternal)
	}
	return out, nil
}

// lookPath finds tool in t.Path, or fails with FailedPrecondition naming
// the missing tool.
func (t IPTables) lookPath(tool string) (string, error) {
	path := t.Path
	if path == "" {
		path = os.Getenv("PATH")
	}
	if path == "" {
		path = DefaultPath
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s (is the iptables package in the guest image?): %w", tool, path, errdefs.ErrFailedPrecondition)
}

// withStderr adds the standard error that Output collected to err.
func withStderr(err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) && len(bytes.TrimSpace(exit.Stderr)) > 0 {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(exit.Stderr))
	}
	return err
}
