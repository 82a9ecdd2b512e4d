// Package testenv says what a test does when something it needs is not
// on this machine: on a casual run (`go test ./pkg/...` as a user) it
// skips, naming what is missing; on a strict run (VC_TEST_STRICT=1, which
// `make test` sets, having installed and built everything the suites
// need) it fails, so that a suite never reports ok having tested nothing.
//
// Use Skip for what `make test` provides (root, the tools of
// hack/install-deps.sh, containerd, the guest image); keep testing.T's
// Skip for what no run here can have (KVM, a host with more CPUs, the
// internet) or for a test left out by design (-short, benchmarks).
//
// It imports nothing of the project, so that any package's tests may use
// it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// StrictEnv is the variable that makes a run strict.
const StrictEnv = "VC_TEST_STRICT"

// Strict tells whether a missing requirement fails the test.
func Strict() bool {
	v := os.Getenv(StrictEnv)
	return v != "" && v != "0"
}

// Skip skips t saying why, or fails it on a strict run.
func Skip(t testing.TB, why string) {
	t.Helper()
	if Strict() {
		t.Fatalf("%s=1 (make test): %s", StrictEnv, why)
	}
	t.Skip(why)
}

// Skipf is Skip with a format.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	Skip(t, fmt.Sprintf(format, args...))
}

// RequireRoot skips (or fails) a test that needs root, saying for what.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root: "+what)
	}
}

// LookPath returns the path of tool, or skips (or fails) the test naming
// the tool and what provides it.
func LookPath(t testing.TB, tool, from string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		Skipf(t, "needs %s (%s): %v", tool, from, err)
	}
	return p
}
