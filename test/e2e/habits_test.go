package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/pkg/network/nstest"
)

// docker's habits with vc: ps shows an id of 12 hex digits apart from the
// name, NAMES and PORTS; a prefix of the id names the container to exec,
// inspect, stats and rm; inspect -f runs docker's templates and knows the
// container's address; stats --no-stream has a CPU % (from two samples)
// and the VM's memory as the limit; rm -f prints nothing on stderr.
func TestDockerHabits(t *testing.T) {
	id := "e2e-habits"
	port := freePort(t)
	if out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "-m", "256M", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "busybox", "--", "sleep", "1000"); code != 0 {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	defer noLeftovers(t, id)
	defer vcRun(t, nil, "rm", "-f", id)

	out, errOut, code := vcRun(t, nil, "ps")
	if code != 0 || !regexp.MustCompile(`^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\n`).MatchString(out) {
		t.Fatalf("ps: exit %d stdout %q stderr %q, want docker's columns", code, out, errOut)
	}
	row := regexp.MustCompile(`(?m)^([0-9a-f]{12})\s+busybox\s+.*running\s+` + regexp.QuoteMeta(fmt.Sprintf("127.0.0.1:%d->80/tcp", port)) + `\s+` + id + `$`).FindStringSubmatch(out)
	if row == nil {
		t.Fatalf("ps has no row of %s with its id, port and name:\n%s", id, out)
	}
	short := row[1]
	if out, _, _ := vcRun(t, nil, "ps", "--format", "{{.ID}} {{.Names}} {{.Ports}}"); !strings.Contains(out, short+" "+id+" 127.0.0.1:") {
		t.Errorf("ps --format of ID, Names and Ports: %q", out)
	}
	prefix := short[:7]

	if out, errOut, code := vcRun(t, nil, "exec", prefix, "echo", "by-prefix"); code != 0 || out != "by-prefix\n" {
		t.Errorf("exec %s (an id prefix): exit %d stdout %q stderr %q", prefix, code, out, errOut)
	}
	if out, errOut, code := vcRun(t, nil, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", prefix); code != 0 || out != "10.0.2.15\n" {
		t.Errorf("inspect -f IPAddress: exit %d stdout %q stderr %q, want 10.0.2.15", code, out, errOut)
	}
	if out, errOut, code := vcRun(t, nil, "inspect", "--format", "{{.State.Status}} {{.Name}} {{.Id}}", id); code != 0 || !strings.HasPrefix(out, "running "+id+" "+short) {
		t.Errorf("inspect --format State.Status, Name, Id: exit %d stdout %q stderr %q", code, out, errOut)
	}

	// A CPU % (not --) and the VM's 256 MiB as the limit (not unlimited).
	out, errOut, code = vcRun(t, nil, "stats", "--no-stream", prefix)
	if code != 0 || !regexp.MustCompile(`(?m)^`+short+`\s+`+id+`\s+\d+\.\d\d%\s+\d+\.\d\ds\s+\S+ / 256\.00MiB\s+\d+\.\d\d%\s+\d+\s`).MatchString(out) {
		t.Errorf("stats --no-stream: exit %d stdout %q stderr %q, want a CPU %% and 256.00MiB as the limit", code, out, errOut)
	}

	out, errOut, code = vcRun(t, nil, "rm", "-f", prefix)
	if code != 0 || errOut != "" || out != id+"\n" {
		t.Errorf("rm -f %s: exit %d stdout %q stderr %q, want the name and nothing on stderr", prefix, code, out, errOut)
	}
}

// In a network namespace it joined, the container's address is the one
// the guest took from the namespace's link.
func TestInspectAddressInNetNS(t *testing.T) {
	a, b := nstest.New(t, "ia"), nstest.New(t, "ib")
	nstest.Veth(t, a, "veth0", []string{"10.78.0.1/24"}, b, "peer0", []string{"10.78.0.2/24"})
	id := "e2e-habits-ns"
	if out, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "--network", a.Path, "busybox", "--", "sleep", "1000"); code != 0 {
		t.Fatalf("run -d: exit %d stdout %q stderr %q", code, out, errOut)
	}
	defer noLeftovers(t, id)
	defer vcRun(t, nil, "rm", "-f", id)
	if out, errOut, code := vcRun(t, nil, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", id); code != 0 || out != "10.78.0.1\n" {
		t.Errorf("inspect -f IPAddress: exit %d stdout %q stderr %q, want 10.78.0.1", code, out, errOut)
	}
}
