package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestHooks: a prestart hook runs at create with the container's state
// on its stdin, its pid's network namespace a new one (not the host's),
// where what the hook puts (a veth with an address, as docker's
// libnetwork-setkey does) is the VM's network. A failing hook fails
// create with its output, and leaves nothing (the namespace's mount
// neither). poststart hooks run once the container started, poststop
// hooks once it was deleted, each with the state runc gives; one that
// fails is logged and the others still run.
func TestHooks(t *testing.T) {
	const id = "hooked"
	dir := t.TempDir()
	hook := `cat > "$0/state"
pid=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$0/state")
readlink /proc/$pid/ns/net > "$0/ns"
nsenter --net=/proc/$pid/ns/net sh -ec 'ip link add eth0 type veth peer name vh0
ip addr add 10.99.0.2/24 dev eth0
ip link set eth0 up
ip link set vh0 up'`
	b := bundle(t, []string{"ip", "-4", "-o", "addr"}, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		late := func(name string) []specs.Hook {
			return []specs.Hook{
				{Path: "/bin/sh", Args: []string{"sh", "-c", "exit 1"}},
				{Path: "/bin/sh", Args: []string{"sh", "-c", `cat > "$0"`, filepath.Join(dir, name)}},
			}
		}
		s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{
			Path: "/bin/sh", Args: []string{"sh", "-c", hook, dir},
			Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		}}, Poststart: late("poststart"), Poststop: late("poststop")}
	})
	t.Cleanup(func() {
		rt(nil, "delete", "--force", id)
		noLeftovers(t, id)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := runtimeCmd(ctx, "run", "--bundle", b, id)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("run: %v: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "inet 10.99.0.2/24") {
		t.Errorf("the container's addresses: %q, want the hook's 10.99.0.2/24", out.String())
	}
	var st specs.State
	sb, _ := os.ReadFile(filepath.Join(dir, "state"))
	if err := json.Unmarshal(sb, &st); err != nil || st.ID != id || st.Status != specs.StateCreating || st.Bundle != b || st.Pid <= 0 {
		t.Errorf("the hook's state: %s (%v)", sb, err)
	}
	for name, status := range map[string]specs.ContainerState{"poststart": specs.StateRunning, "poststop": specs.StateStopped} {
		var late specs.State
		sb, _ := os.ReadFile(filepath.Join(dir, name))
		if err := json.Unmarshal(sb, &late); err != nil || late.ID != id || late.Status != status || late.Bundle != b || (status == specs.StateRunning && late.Pid <= 0) {
			t.Errorf("the %s hook's state: %s (%v), want status %s", name, sb, err, status)
		}
	}
	ns, _ := os.ReadFile(filepath.Join(dir, "ns"))
	host, _ := os.Readlink("/proc/self/ns/net")
	if !strings.HasPrefix(string(ns), "net:[") || strings.TrimSpace(string(ns)) == host {
		t.Errorf("the hook's pid's network namespace %q, want a new one (the host's is %s)", ns, host)
	}
	noLeftovers(t, id)

	const failing = "hookfails"
	b = bundle(t, []string{"true"}, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook says no; exit 3"}}}}
	})
	t.Cleanup(func() {
		rt(nil, "delete", "--force", failing)
		noLeftovers(t, failing)
	})
	o, code := rt(nil, "create", "--bundle", b, failing)
	if code != 1 || !strings.Contains(o, "hook says no") || !strings.Contains(o, "exit status 3") {
		t.Errorf("create with a failing hook: exit %d, %q", code, o)
	}
	noLeftovers(t, failing)
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); bytes.Contains(mi, []byte(filepath.Join(stateRoot, failing))) {
		t.Errorf("a mount of %s is left", failing)
	}
}
