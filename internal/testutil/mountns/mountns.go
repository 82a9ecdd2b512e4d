// Package mountns lets a package's tests mount for real without touching
// the machine's mount table: its TestMain re-runs the test binary in a
// mount namespace of its own whose mounts do not propagate back.
package mountns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

const env = "VC_TEST_PRIVATE_MOUNTNS"

// Enter is called first in TestMain. As root, outside such a namespace, it
// re-runs the test binary inside a new one and exits with its status. Inside
// it, it makes / private and returns true; when not root, it returns false
// (the tests that mount then skip, saying why).
func Enter() bool {
	switch {
	case os.Getenv(env) == "1":
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "make / private: %v\n", err)
			os.Exit(1)
		}
		return true
	case os.Geteuid() != 0:
		return false
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), env+"=1")
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
	return false
}
