package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
)

// buildVC builds the vc binary for tests that run it as a person does.
func buildVC(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vc")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// An unknown flag gets docker's two lines and exit code 125, not the
// command's usage (it printed some 60 lines), from every command.
func TestUnknownFlag(t *testing.T) {
	bin := buildVC(t)
	root := t.TempDir()
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(bin, append([]string{"--state-root", root, "--data-root", root}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}
	var names []string
	for n, c := range commands {
		if c.short != "" && n != "help" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	sub := map[string]string{"factory": "factory init", "image": "image build"}
	cases := map[string][]string{}
	for _, n := range names {
		if s, ok := sub[n]; ok {
			cases[s] = []string{n, "init", "--foo"}
			if n == "image" {
				cases[s] = []string{n, "build", "--foo"}
			}
			continue
		}
		cases[n] = []string{n, "--foo"}
	}
	if len(cases) < 25 {
		t.Fatalf("only %d commands: %v", len(cases), names)
	}
	for name, args := range cases {
		out, errOut, code := run(args...)
		want := "unknown flag: --foo\nSee 'vc " + name + " --help'.\n"
		if code != 125 || out != "" || errOut != want {
			t.Errorf("vc %q: exit %d stdout %q stderr %q; want exit 125 and stderr %q", args, code, out, errOut, want)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "-Z", "busybox"}, "unknown shorthand flag: 'Z' in -Z\nSee 'vc run --help'.\n"},
		{[]string{"run", "--foo=1", "busybox"}, "unknown flag: --foo\nSee 'vc run --help'.\n"},
		{[]string{"--foo", "ps"}, "unknown flag: --foo\nSee 'vc --help'.\n"},
		// A missing argument: the error and the hint, no usage either.
		{[]string{"exec"}, "vc exec: CONTAINER and CMD: missing\nSee 'vc exec --help'.\n"},
	} {
		if out, errOut, code := run(c.args...); code != 125 || out != "" || errOut != c.want {
			t.Errorf("vc %q: exit %d stdout %q stderr %q; want exit 125 and stderr %q", c.args, code, out, errOut, c.want)
		}
	}
	// Asked for, the usage is still all there, on stdout.
	if out, errOut, code := run("run", "--help"); code != 0 || errOut != "" || !bytes.Contains([]byte(out), []byte("-network string")) {
		t.Errorf("run --help: exit %d stdout %q stderr %q", code, out, errOut)
	}
}
