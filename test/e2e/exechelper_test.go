package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestExecHelperInVM: `vc exec` in a running container goes through the
// container's exec helper once the first exec has started it (it shows
// in the container's processes), with the exec's output, exit status and
// environment; killed from inside the container, it is not restarted and
// execs go on through libcontainer's path. test/agent covers the rest.
func TestExecHelperInVM(t *testing.T) {
	id := "e2e-exechelper"
	if out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "-e", "FOO=bar", "busybox", "--", "sleep", "1000"); code != 0 {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	defer func() {
		vcRun(t, nil, "rm", "-f", id)
		noLeftovers(t, id)
	}()
	const helpers = `for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = vc-exec-helper ] && echo ${p#/proc/}; done; true`
	helperPid := ""
	deadline := time.Now().Add(2 * time.Minute)
	for helperPid == "" {
		out, errOut, code := vcRun(t, nil, "exec", id, "sh", "-c", helpers)
		if code != 0 {
			t.Fatalf("exec: exit %d: %s", code, errOut)
		}
		helperPid = strings.TrimSpace(out)
		if time.Now().After(deadline) {
			t.Fatal("no vc-exec-helper in the container after execs for 2 minutes")
		}
	}
	if out, errOut, code := vcRun(t, nil, "exec", "-w", "/etc", id, "sh", "-c", `echo "$FOO $HOME $(pwd)"; exit 3`); code != 3 || out != "bar /root /etc\n" {
		t.Errorf("exec through the helper: exit %d stdout %q stderr %q, want 3 and %q", code, out, errOut, "bar /root /etc\n")
	}
	if _, errOut, code := vcRun(t, nil, "exec", id, "nosuchcommand"); code != 127 || !strings.Contains(errOut, `exec: "nosuchcommand": executable file not found in $PATH`) {
		t.Errorf("missing command through the helper: exit %d stderr %q", code, errOut)
	}
	// Killed from inside (the exec doing it may fail if the helper dies
	// before it answers).
	vcRun(t, nil, "exec", id, "kill", "-9", helperPid)
	for {
		out, errOut, code := vcRun(t, nil, "exec", id, "sh", "-c", helpers+"; echo after")
		if code == 0 && strings.TrimSpace(out) == "after" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the helper's kill: exit %d stdout %q stderr %q", code, out, errOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
