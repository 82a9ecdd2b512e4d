package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
)

// TestKillSig is the OCI runtime-tools validation program killsig
// (validation/killsig), step by step: one bundle whose root filesystem is
// its own, and one container id, run three times; its process is a shell
// that traps the signal; the program creates and starts it, checks its
// state once, sends `kill ID SIG` right away, waits up to 5 s (state
// polled every second) for it to stop, deletes it, and wants the file the
// trap touched in the bundle's root. The trap must be set when the signal
// comes: vc-runtime's start returned while the shell was still starting
// (slow in a VM), the signal came first and PID 1 of the container
// dropped it (a PID namespace's init ignores a signal it does not catch),
// and the shell ran its 10 s.
func TestKillSig(t *testing.T) {
	root := t.TempDir()
	if err := rootfs.BuildBusybox(root); err != nil {
		t.Fatal(err)
	}
	const id = "killsig"
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	for _, sig := range []string{"TERM", "USR1", "USR2"} {
		args := []string{"sh", "-c", fmt.Sprintf("trap 'touch /%s' %s; sleep 10 & wait $!", sig, sig)}
		b := bundle(t, args, func(s *specs.Spec) { s.Root.Path = root })
		createToFiles(t, b, id)
		mustRT(t, "start", id)
		// killsig: WaitingForStatus(running, 5 s, 1 s), whose first
		// look sees it running, then the kill.
		if s := getState(t, id); s.Status != "running" {
			t.Fatalf("%s: state after start %q, want running", sig, s.Status)
		}
		start := time.Now()
		mustRT(t, "kill", id, sig)
		status := ""
		for i := 0; i < 5; i++ {
			if status = getState(t, id).Status; status == "stopped" {
				break
			}
			time.Sleep(time.Second)
		}
		if status != "stopped" {
			t.Errorf("%s: %q %v after the kill, want stopped within 5 s", sig, status, time.Since(start).Round(time.Millisecond))
			rt(nil, "kill", id, "KILL")
			waitStatus(t, id, "stopped")
		} else {
			t.Logf("%s: stopped %v after the kill", sig, time.Since(start).Round(time.Millisecond))
		}
		mustRT(t, "delete", id)
		if _, err := os.Stat(filepath.Join(root, sig)); err != nil {
			t.Errorf("%s: the trap did not run: %v", sig, err)
		}
		noLeftovers(t, id)
	}
}

// createToFiles creates container id from bundle b as runtime-tools does:
// its stdout and stderr are files in the bundle (a pipe would stay open
// as long as the container's owner lives).
func createToFiles(t *testing.T, b, id string) {
	t.Helper()
	var files []*os.File
	for _, name := range []string{"stdout", "stderr"} {
		f, err := os.Create(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "create", "--bundle", b, id)
	cmd.Stdout, cmd.Stderr = files[0], files[1]
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(filepath.Join(b, "stderr"))
		t.Fatalf("create: %v: %s", err, out)
	}
}
