package storage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const nsEnv = "VC_STORAGE_TEST_MOUNTNS"

// privateNS is true when the tests run, as root, in a mount namespace of
// their own, where they may really mount.
var privateNS bool

// TestMain re-runs the test binary, when root, in a new mount namespace
// whose mounts do not propagate back, so the tests can mount for real
// without touching the machine's mount table.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(nsEnv) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), nsEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			os.Exit(0)
		case errors.As(err, &ee):
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintf(os.Stderr, "re-run in a mount namespace: %v\n", err)
		os.Exit(1)
	}
	if os.Getenv(nsEnv) == "1" {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "make / private: %v\n", err)
			os.Exit(1)
		}
		privateNS = true
	}
	os.Exit(m.Run())
}

func requireMountNS(t *testing.T) {
	t.Helper()
	if !privateNS {
		t.Skip("needs root: mounts for real in a private mount namespace")
	}
}
