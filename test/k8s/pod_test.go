package k8s

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPodExecLogs: a pod Runs; kubectl logs shows its output; kubectl exec
// returns the command's output and exit code and feeds it stdin (-i). On vc
// the pod's kernel is the guest's, on runc the host's.
func TestPodExecLogs(t *testing.T) {
	t.Parallel()
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	hostKernel := unix.ByteSliceToString(uts.Release[:])
	forEachClass(t, "exec", func(t *testing.T, n *ns, rc string) {
		n.apply(podManifest("p", rc, `  containers:
  - name: c
    image: `+image+`
    imagePullPolicy: Never
    command: ["sh", "-c", "echo hello from `+rc+`; exec sleep 3600"]
`))
		n.waitReady("p")
		if logs := n.logsOnce("hello from "+rc, "p"); !strings.Contains(logs, "hello from "+rc) {
			t.Errorf("kubectl logs: %q, want %q", logs, "hello from "+rc)
		}
		if out := strings.TrimSpace(n.exec("p", "", "echo", "out")); out != "out" {
			t.Errorf("exec echo: %q", out)
		}
		kernel := strings.TrimSpace(n.exec("p", "", "uname", "-r"))
		if (rc == "vc") == (kernel == hostKernel) {
			t.Errorf("kernel in the pod %q, host's %q: on %s want it %s", kernel, hostKernel, rc, map[bool]string{true: "the guest's", false: "the host's"}[rc == "vc"])
		}
		// Exit codes come back as kubectl's own.
		for _, code := range []int{0, 3, 42} {
			_, err := n.kErr(nil, "exec", "p", "--", "sh", "-c", "exit "+strconv.Itoa(code))
			got := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				got = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("exec exit %d: %v", code, err)
			}
			if got != code {
				t.Errorf("exec `exit %d`: kubectl exited %d", code, got)
			}
		}
		// -i: stdin reaches the process, its end closes the stream.
		in := strings.Repeat("line of stdin\n", 200)
		out, err := n.kErr([]byte(in), "exec", "-i", "p", "--", "sh", "-c", "wc -l; cat >/dev/null")
		if err != nil {
			t.Fatalf("exec -i: %v: %s", err, out)
		}
		if strings.TrimSpace(out) != "200" {
			t.Errorf("exec -i wc -l: %q, want 200", out)
		}
		out, err = n.kErr([]byte("abc\n"), "exec", "-i", "p", "--", "cat")
		if err != nil || out != "abc\n" {
			t.Errorf("exec -i cat: %q, %v; want \"abc\\n\"", out, err)
		}
	})
}
