package container

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestQuickLook: the helper's PATH lookup finds what exec.LookPath finds,
// and leaves to exec.LookPath what it cannot decide by a stat.
func TestQuickLook(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"prog": 0o755, "plain": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	for _, c := range []struct {
		path, file string
		want       string
		quick      bool
	}{
		{"/nonexistent:" + dir, "prog", filepath.Join(dir, "prog"), true},
		{dir, "plain", "", false},         // not executable: exec.LookPath's error
		{dir, "sub", "", false},           // a directory
		{dir, "nosuch", "", false},        // not found: exec.LookPath's error
		{"rel:" + dir, "prog", "", false}, // a relative entry first: exec.LookPath (ErrDot)
		{dir, filepath.Join(dir, "prog"), filepath.Join(dir, "prog"), true},
		{dir, "/etc", "/etc", false},
	} {
		t.Setenv("PATH", c.path)
		got, quick := quickLook(c.file)
		if quick != c.quick || quick && got != c.want {
			t.Errorf("PATH=%s quickLook(%q) = %q, %v; want %q, %v", c.path, c.file, got, quick, c.want, c.quick)
		}
		if quick {
			if lp, err := exec.LookPath(c.file); err != nil || lp != got {
				t.Errorf("PATH=%s: exec.LookPath(%q) = %q, %v; quickLook said %q", c.path, c.file, lp, err, got)
			}
		}
	}
}

// TestPrepareEnv: libcontainer's rules (the last of duplicates wins,
// HOME added when missing or empty, nil stays nil, a bad variable
// refused).
func TestPrepareEnv(t *testing.T) {
	t.Setenv("PATH", "")
	got, err := prepareEnv([]string{"A=1", "PATH=/x", "A=2", "HOME="}, os.Getuid())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "PATH=/x" || got[1] != "A=2" || !slices.Contains(got, "HOME="+userHome(os.Getuid())) || os.Getenv("PATH") != "/x" {
		t.Errorf("prepareEnv = %q (PATH %q)", got, os.Getenv("PATH"))
	}
	if got, err := prepareEnv(nil, 0); got != nil || err != nil {
		t.Errorf("prepareEnv(nil) = %q, %v", got, err)
	}
	for _, bad := range []string{"NOEQUALS", "=x", "A=\x00"} {
		if _, err := prepareEnv([]string{bad}, 0); err == nil {
			t.Errorf("prepareEnv(%q) accepted it", bad)
		}
	}
}

// TestChildOfPidfd: the pid of the agent's own child; another process
// (not its child) is refused.
func TestChildOfPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(fd)
	if pid, err := childOfPidfd(fd); err != nil || pid != cmd.Process.Pid {
		t.Errorf("childOfPidfd(child) = %d, %v; want %d", pid, err, cmd.Process.Pid)
	}
	pfd, err := unix.PidfdOpen(os.Getppid(), 0)
	if err != nil {
		t.Skipf("pidfd_open of the parent: %v", err)
	}
	defer unix.Close(pfd)
	if pid, err := childOfPidfd(pfd); err == nil {
		t.Errorf("childOfPidfd(parent) = %d, accepted", pid)
	}
	if _, err := childOfPidfd(int(os.Stdin.Fd())); err == nil {
		t.Errorf("childOfPidfd(stdin) accepted")
	}
}

func TestCapsEqual(t *testing.T) {
	a := &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Inheritable: nil}
	b := &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Inheritable: []string{}}
	if !capsEqual(a, b) {
		t.Errorf("an empty set and none differ")
	}
	if capsEqual(a, &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}) || capsEqual(a, nil) {
		t.Errorf("different sets equal")
	}
}
