package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A missing requirement skips a casual run and fails a strict one: run
// in a child process, whose outcome is the point.
func TestSkip(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "1" {
		Skip(t, "needs a unicorn")
		return
	}
	for _, c := range []struct {
		strict string
		fail   bool
		want   string
	}{
		{"", false, "--- SKIP: TestSkip"},
		{"0", false, "--- SKIP: TestSkip"},
		{"1", true, "--- FAIL: TestSkip"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSkip$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTENV_CHILD=1", StrictEnv+"="+c.strict)
		out, err := cmd.CombinedOutput()
		if (err != nil) != c.fail || !strings.Contains(string(out), c.want) || !strings.Contains(string(out), "needs a unicorn") {
			t.Errorf("%s=%q: %v\n%s\nwant %s naming the reason", StrictEnv, c.strict, err, out, c.want)
		}
	}
}
