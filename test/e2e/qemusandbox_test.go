package e2e

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// TestQEMUSeccomp: QEMU runs under its seccomp sandbox (-sandbox on: no
// spawning, no privilege elevation, no obsolete calls) and dumps no core
// (RLIMIT_CORE 0), and the sandbox still works: the VM boots and its agent
// answers.
func TestQEMUSeccomp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := newSandbox(ctx, t, "e2e-seccomp", "")
	pid := s.Status().VMPid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var mode, filters string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Seccomp:"); ok {
			mode = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "Seccomp_filters:"); ok {
			filters = strings.TrimSpace(v)
		}
	}
	// 2: a filter mode; every thread of QEMU has it.
	if mode != "2" || filters == "" || filters == "0" {
		t.Fatalf("qemu %d: Seccomp %q, Seccomp_filters %q; want a filter", pid, mode, filters)
	}
	// No core dump of the guest's memory.
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(l, "Max core file size") && strings.Fields(l)[4] != "0" {
			t.Errorf("qemu %d: %s; want 0", pid, l)
		}
	}
	if _, err := s.Metrics(ctx); err != nil {
		t.Fatalf("the agent under a sandboxed QEMU: %v", err)
	}
}

// TestQEMUConfined: a QEMU started by root runs as the unprivileged user
// vc-qemu, with no_new_privs, only the four file capabilities its 9p
// server needs (in its effective and its bounding set), in a mount
// namespace of its own whose root holds the system's programs and the
// VM's own files: a host file outside the sandbox's directory is not
// there for it to open, while one inside is. The guest's files still act
// as root's: a container chowns, and reads a file only root may.
func TestQEMUConfined(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	u, err := user.Lookup(qemu.DefaultUser)
	if err != nil {
		t.Fatalf("the install step makes %s: %v", qemu.DefaultUser, err)
	}
	s := newSandbox(ctx, t, "e2e-confined", "")
	pid := s.Status().VMPid
	st := procStatus(t, pid)
	for _, f := range []string{"Uid", "Gid"} {
		want := u.Uid
		if f == "Gid" {
			want = u.Gid
		}
		for _, id := range strings.Fields(st[f]) {
			if id != want {
				t.Errorf("qemu %d: %s %q, want %s everywhere", pid, f, st[f], want)
				break
			}
		}
	}
	// CAP_CHOWN 0, CAP_DAC_OVERRIDE 1, CAP_FOWNER 3, CAP_FSETID 4.
	const fileCaps = "000000000000001b"
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if st[f] != fileCaps {
			t.Errorf("qemu %d: %s %s, want %s (chown, dac_override, fowner, fsetid)", pid, f, st[f], fileCaps)
		}
	}
	if st["NoNewPrivs"] != "1" {
		t.Errorf("qemu %d: NoNewPrivs %q", pid, st["NoNewPrivs"])
	}
	ours, _ := os.Readlink("/proc/self/ns/mnt")
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil || theirs == ours {
		t.Fatalf("qemu %d: mount namespace %q (%v), ours %q", pid, theirs, err, ours)
	}

	// What its opens resolve against: a host secret and a file the test
	// puts beside the state root are not there; the VM's state dir is.
	outside := filepath.Join(filepath.Dir(stateRoot), "confined-probe")
	if err := os.WriteFile(outside, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(outside)
	vmDir := filepath.Join(s.Dir(), "vm")
	inside := filepath.Join(vmDir, "confined-probe")
	if err := os.WriteFile(inside, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(inside)
	root := fmt.Sprintf("/proc/%d/root", pid)
	for _, p := range []string{"/etc/shadow", "/etc/passwd", "/root", "/home", "/var/lib/dpkg", outside} {
		if _, err := os.Lstat(root + p); !os.IsNotExist(err) {
			t.Errorf("qemu %d sees the host's %s (%v)", pid, p, err)
		}
	}
	// Its /proc is its own process only, not the host's (nor another
	// QEMU's of the same user).
	if ents, err := os.ReadDir(root + "/proc"); err != nil || len(ents) != 1 || ents[0].Name() != "self" {
		t.Errorf("qemu %d's /proc: %v (%v), want only self", pid, ents, err)
	}
	if _, err := os.Stat(root + inside); err != nil {
		t.Errorf("qemu %d does not see its own state dir's %s: %v", pid, inside, err)
	}
	// And QEMU itself, asked to open them (blockdev-add).
	vm, err := hypervisor.Attach(ctx, "qemu", vmDir)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.(interface{ Close() error }).Close()
	q := vm.(interface{ QMP() *qmp.Client }).QMP()
	open := func(name, path string) error {
		return q.BlockdevAdd(ctx, map[string]any{"driver": "raw", "node-name": name, "read-only": true,
			"file": map[string]any{"driver": "file", "filename": path}})
	}
	if err := open("probe-out", outside); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("qemu opened %s outside its sandbox: %v", outside, err)
	}
	if err := open("probe-shadow", "/etc/shadow"); err == nil || !strings.Contains(err.Error(), "No such file") {
		t.Errorf("qemu opened /etc/shadow: %v", err)
	}
	if err := open("probe-in", inside); err != nil {
		t.Errorf("qemu could not open %s in its state dir: %v", inside, err)
	} else if err := q.BlockdevDel(ctx, "probe-in"); err != nil {
		t.Error(err)
	}

	// A VM serving no share: no capability at all.
	t.Run("no shares", func(t *testing.T) {
		bare, err := hypervisor.New("qemu", hypervisor.Config{ID: "e2e-confined-bare", StateDir: t.TempDir(), Kernel: kernel, Initrd: initrd, Accel: "tcg"})
		if err != nil {
			t.Fatal(err)
		}
		if err := bare.Start(ctx); err != nil {
			t.Fatal(err)
		}
		defer bare.Stop(context.Background(), 0)
		st := procStatus(t, bare.Info().Pid)
		for _, f := range []string{"CapEff", "CapPrm", "CapBnd", "CapAmb"} {
			if st[f] != "0000000000000000" {
				t.Errorf("qemu without shares: %s %s, want none", f, st[f])
			}
		}
	})

	// The guest's root still owns its files over 9p.
	out, errOut, code := vcRun(t, nil, "run", "--rm", "busybox", "--", "sh", "-c",
		"echo secret > /s && chmod 600 /s && chown 4321:4321 /s && stat -c '%u:%g %a' /s && cat /s")
	if code != 0 || strings.TrimSpace(out) != "4321:4321 600\nsecret" {
		t.Errorf("files in a confined VM: code %d, out %q, stderr %s", code, out, errOut)
	}
}

// procStatus is /proc/PID/status as field: value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}
