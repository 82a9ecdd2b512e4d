package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `vc kill -s SIG` and `vc stop` signal the container's init only, as
// docker does: a server that reloads on HUP keeps its workers, and one
// that stops on TERM stops them itself. (They signalled every process of
// the container: the workers died of the HUP, or ran their own TERM traps
// while init was still at its own.) Only what stop sends after its timeout
// goes to every process.
func TestKillStopSignalInitOnly(t *testing.T) {
	id := "e2e-signal-init"
	dir := t.TempDir()
	// init traps HUP and TERM; a child shell traps them too and a plain
	// sleep dies of either. Each writes where the host sees it.
	script := `trap 'echo hup >> /data/init-hup' HUP
trap 'echo term > /data/init-term; sleep 2; exit 3' TERM
sleep 1000 &
echo $! > /data/sleeper
sh -c 'trap "echo hup >> /data/child-hup" HUP; trap "echo term > /data/child-term; exit" TERM; echo $$ > /data/child; while :; do sleep 1; done' &
while :; do sleep 1 & wait $!; done`
	out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "-v", dir+":/data", "busybox", "--", "sh", "-c", script)
	if code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	t.Cleanup(func() {
		vcRun(t, nil, "rm", "-f", id)
		noLeftovers(t, id)
	})
	exists := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	pidOf := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	// The child writes its pid once its traps are set, after init set its
	// own.
	waitFor(t, func() bool { return pidOf("sleeper") != "" && pidOf("child") != "" }, "the container's processes started")
	running := func(name string) bool {
		_, _, code := vcRun(t, nil, "exec", id, "kill", "-0", pidOf(name))
		return code == 0
	}
	for _, p := range []string{"sleeper", "child"} {
		if !running(p) {
			t.Fatalf("%s (pid %s) does not run before the kill", p, pidOf(p))
		}
	}

	if _, errOut, code := vcRun(t, nil, "kill", "-s", "HUP", id); code != 0 {
		t.Fatalf("kill -s HUP: exit %d: %s", code, errOut)
	}
	waitFor(t, func() bool { return exists("init-hup") }, "init's HUP trap wrote /data/init-hup")
	// The child's trap would run once its sleep 1 is over: give it that.
	time.Sleep(2 * time.Second)
	if exists("child-hup") {
		t.Errorf("kill -s HUP reached the child shell too (its trap ran)")
	}
	for _, p := range []string{"sleeper", "child"} {
		if !running(p) {
			t.Errorf("%s (pid %s) died of kill -s HUP sent to the container", p, pidOf(p))
		}
	}

	// stop: TERM to init, whose trap takes 2 s and exits 3; well inside the
	// timeout, so nothing gets the SIGKILL.
	start := time.Now()
	if _, errOut, code := vcRun(t, nil, "stop", "-t", "60", id); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	t.Logf("stop took %v", time.Since(start).Round(time.Millisecond))
	if !exists("init-term") {
		t.Errorf("stop: init's TERM trap did not run")
	}
	if exists("child-term") {
		t.Errorf("stop sent TERM to the child shell too (its trap ran)")
	}
	out, errOut, code = vcRun(t, nil, "inspect", id)
	var st struct {
		Containers []struct {
			ExitCode int32 `json:"exit_code"`
		} `json:"containers"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Containers) != 1 {
		t.Fatalf("inspect: exit %d, %q, %s", code, out, errOut)
	}
	if st.Containers[0].ExitCode != 3 {
		t.Errorf("exit code after stop %d, want 3 (init's TERM trap)", st.Containers[0].ExitCode)
	}
}
