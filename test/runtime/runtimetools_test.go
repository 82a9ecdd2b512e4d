package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/guestconfig"
	"github.com/virtcontainers/vc/internal/mount"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
)

// The OCI runtime-tools validation suite, unmodified: its programs
// (validation/<name>/, each a main package printing TAP) fetched with the
// Go toolchain from the module proxy at a pinned version, built once into
// a cache, and run against vc-runtime as the suite's README runs them
// (RUNTIME=the runtime, from the module's root: they read
// rootfs-amd64.tar.gz and runtimetest from the working directory).
const (
	runtimeToolsModule = "github.com/opencontainers/runtime-tools"
	// master of 2025-11-14 (runtime-spec v1.3.0): v0.9.0, the last tag,
	// is of 2019 and predates most of these programs.
	runtimeToolsVersion = "v0.9.1-0.20251114084447-edf4cb3d2116"
	// Each program boots one VM per container it makes (one to 17, each a
	// few seconds under TCG): two at a time on a 2-core machine, and no
	// more than 100 s each (runc's slowest takes 23 s; only the two that
	// make 17 and 16 containers need longer, and they fail earlier).
	runtimeToolsParallel = 2
	runtimeToolsTimeout  = 100 * time.Second
)

// runtimeToolsRacy lists the programs whose outcome is a race the
// program itself makes, on runc too: they are run and logged, and either
// outcome is accepted.
var runtimeToolsRacy = map[string]string{
	"pidfile": "it kills a container running `true` after polling its state once a second and fails if `true` has already exited (runc fails it so); under vc it passes when the kill comes before the exit, which the machine's load decides",
}

// runtimeToolsFailing lists the programs that fail against vc-runtime,
// each with why. Every program not listed must pass (exit 0, a plan, every
// test "ok"); a listed program that passes fails the test too, so that the
// list stays true. docs/vc-runtime.md has the same table beside runc's.
var runtimeToolsFailing = map[string]string{
	// The container's cgroup is in its VM: the host has nothing at
	// cgroupsPath for these programs to read (they read the host's cgroup
	// v1 files of state.pid, the VM's owner on the host).
	"delete_resources":               "VM: reads the pids limit from the host's cgroup at cgroupsPath; the container's cgroup is in the guest",
	"linux_cgroups_cpus":             "VM: reads cpu.shares/cfs_* and cpuset from the host's cgroup at cgroupsPath; the container's cgroup is in the guest (17 containers, one VM each: cut at the timeout)",
	"linux_cgroups_devices":          "VM: reads the host's devices cgroup at cgroupsPath (runc fails one of its tests too)",
	"linux_cgroups_memory":           "VM: reads the host's memory cgroup at cgroupsPath (runc fails 12 of 54 too)",
	"linux_cgroups_network":          "VM: reads the host's net_cls/net_prio cgroup at cgroupsPath (runc fails too: this host has no net_cls; 16 containers, one VM each: cut at the timeout)",
	"linux_cgroups_pids":             "VM: reads the host's pids cgroup at cgroupsPath (runc fails one test too)",
	"linux_cgroups_relative_blkio":   "VM: host cgroup at cgroupsPath (runc fails too: no blkio weight on this host)",
	"linux_cgroups_relative_cpus":    "VM: reads the host's cpu cgroup of state.pid, the VM's owner",
	"linux_cgroups_relative_devices": "VM: host cgroup of state.pid (runc fails one test too)",
	"linux_cgroups_relative_hugetlb": "VM: host cgroup of state.pid (runc fails too: no hugetlb cgroup on this host)",
	"linux_cgroups_relative_memory":  "VM: host cgroup of state.pid (runc fails 2 of 9 too)",
	"linux_cgroups_relative_network": "VM: host cgroup of state.pid (runc fails too: no net_cls on this host)",
	"linux_cgroups_relative_pids":    "VM: host cgroup of state.pid (runc fails one test too)",
	// The namespaces are the guest's: state.pid is the VM's owner on the
	// host, in the host's namespaces.
	"linux_ns_nopath": "VM: compares /proc/<state.pid>/ns with the test's own; state.pid is the VM's owner on the host, in the host's namespaces (the container's are in the guest)",
	"linux_ns_path":   "VM: joins namespaces by host path (/proc/<pid>/ns/*): a guest cannot enter a host namespace",

	// Known defects of vc-runtime.

	// Programs that fail with runc v1.4.3 on this host as well.
	"delete":                         "fails with runc too (3 of 5, the same two: delete of a created container succeeds under both)",
	"hooks":                          "fails with runc too: no tests (1..0), \"Hooks MUST be called in the listed order\"",
	"hooks_stdin":                    "fails with runc too: both give the prestart hook status creating, where the suite wants created",
	"linux_cgroups_blkio":            "fails with runc too: this host has no blkio weight (CFQ/BFQ), exit 1 before any test",
	"linux_cgroups_hugetlb":          "fails with runc too: no hugetlb cgroup on this host, exit 1 before any test",
	"linux_devices":                  "fails with runc too: exit 1, the suite's device of type p with 0:0 is refused",
	"linux_mount_label":              "fails with runc too: needs SELinux, exit 1",
	"linux_process_apparmor_profile": "fails with runc too: needs AppArmor, exit 1",
	"linux_seccomp":                  "fails with runc too (0 of 2): the suite's filter breaks the container's start",
	"misc_props":                     "fails with runc too (2 of 3): the suite's container with an unknown annotation lacks /runtimetest",
	"mounts":                         "fails with runc too: exit 1, a bind mount with tmpfs data options",
	"poststart":                      "fails with runc too: exits with no tests (1..0)",
	"poststart_fail":                 "fails with runc too: exits with no tests (1..0)",
	"poststop":                       "fails with runc too: exits with no tests (1..0)",
	"poststop_fail":                  "fails with runc too: exits with no tests (1..0)",
	"prestart":                       "fails with runc too: exits with no tests (1..0)",
	"prestart_fail":                  "fails with runc too: exits with no tests (1..0)",
	"process_capabilities_fail":      "fails with runc too: exit 1",
	"process_rlimits":                "fails with runc too: exit 1",
	"process_rlimits_fail":           "fails with runc too: no TAP plan",
	"start":                          "fails with runc too (6 of 7): the suite's output file is not written",
}

// runtimeToolsSlowFirst are the programs that make the most containers:
// started first, so that the others fill the time around them.
var runtimeToolsSlowFirst = []string{"linux_cgroups_cpus", "linux_cgroups_network", "linux_cgroups_memory"}

// TestRuntimeTools runs every validation program of runtime-tools against
// vc-runtime and compares the outcomes with runtimeToolsFailing. With
// VC_RUNTIME_TOOLS_RUNC=PATH (a runc binary) it runs them against that
// runc too, one at a time (the cgroup programs share /cgrouptest), and
// logs both columns for docs/vc-runtime.md.
func TestRuntimeTools(t *testing.T) {
	start := time.Now()
	tools := runtimeTools(t)
	names, err := runtimeToolsPrograms(tools)
	if err != nil {
		t.Fatal(err)
	}
	for n := range runtimeToolsFailing {
		if !contains(names, n) {
			t.Errorf("runtimeToolsFailing names %s, which runtime-tools %s does not have", n, runtimeToolsVersion)
		}
	}
	factory := runtimeToolsFactory(t)
	results := runValidation(t, "vc-runtime", tools, names, runtimeToolsParallel, func(t *testing.T, dir string) []string {
		return append(vcRuntimeWrapper(t, dir), "VC_FACTORY="+factory)
	})
	passed := 0
	for _, n := range names {
		r := results[n]
		why, listed := runtimeToolsFailing[n]
		race, racy := runtimeToolsRacy[n]
		switch {
		case racy:
			t.Logf("%s: %s either way (%s)", n, r, race)
		case r.pass() && listed:
			t.Errorf("%s passes now (%s): remove it from runtimeToolsFailing (%q) and from docs/vc-runtime.md", n, r, why)
		case !r.pass() && !listed:
			t.Errorf("%s: %s; want every test ok\n%s", n, r, r.tail())
		case !r.pass():
			t.Logf("%s: fails as expected (%s): %s", n, why, r)
		}
		if r.pass() {
			passed++
		}
	}
	t.Logf("vc-runtime passes %d of %d runtime-tools %s programs in %v", passed, len(names), runtimeToolsVersion, time.Since(start).Round(time.Second))

	if runc := os.Getenv("VC_RUNTIME_TOOLS_RUNC"); runc != "" {
		rstart := time.Now()
		rres := runValidation(t, "runc", tools, names, 1, func(t *testing.T, dir string) []string { return []string{"RUNTIME=" + runc} })
		rpassed := 0
		var table strings.Builder
		for _, n := range names {
			if rres[n].pass() {
				rpassed++
			}
			fmt.Fprintf(&table, "| %s | %s | %s |\n", n, results[n].short(), rres[n].short())
		}
		t.Logf("%s passes %d of %d in %v:\n%s", runc, rpassed, len(names), time.Since(rstart).Round(time.Second), table.String())
	}
}

// runtimeToolsFactory makes a VM template for the programs' containers:
// those whose VM fits it (no CPU or memory limit beyond the default size)
// start from it in about a second instead of booting (several seconds
// under TCG), which keeps the suite's hundred containers within the
// test's time; the others boot, and the cold boot has its own tests.
func runtimeToolsFactory(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Setenv("VC_AGENT", agentBin) // the image vc-runtime resolves: this agent's
	kernel, initrd, err := guestconfig.Resolve(ctx, dataRoot, "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "factory")
	if _, err := vcfactory.Init(ctx, dir, vcfactory.Config{
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vcfactory.Destroy(dir) })
	return dir
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runtimeTools returns the directory of the built suite:
// $VC_RUNTIME_TOOLS_CACHE (/var/cache/vc/runtime-tools)/<version>, with
// runtimetest, rootfs-amd64.tar.gz and validation/<name> in it. It
// fetches and builds them the first time; a failure to do so fails the
// test with its reason: the suite is part of the tests.
func runtimeTools(t *testing.T) string {
	t.Helper()
	cache := envOr("VC_RUNTIME_TOOLS_CACHE", "/var/cache/vc/runtime-tools")
	dir := filepath.Join(cache, runtimeToolsVersion)
	done := filepath.Join(dir, ".complete")
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	// Test binaries of other packages or worktrees may build it at the
	// same time: one builds, the others wait and use it.
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	start := time.Now()
	if err := buildRuntimeTools(cache, dir); err != nil {
		t.Fatalf("runtime-tools %s: %v", runtimeToolsVersion, err)
	}
	t.Logf("fetched and built runtime-tools %s into %s in %v", runtimeToolsVersion, dir, time.Since(start).Round(time.Second))
	return dir
}

// buildRuntimeTools fetches the module and builds its programs into a
// new directory of cache, renamed to dir when complete.
func buildRuntimeTools(cache, dir string) error {
	tmp, err := os.MkdirTemp(cache, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	goCmd := func(cwd string, env []string, args ...string) ([]byte, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir = cwd
		// The module's own go.mod and go.sum, whatever this one's are.
		cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GO111MODULE=on")
		cmd.Env = append(cmd.Env, env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return out, nil
	}
	out, err := goCmd(tmp, nil, "mod", "download", "-json", runtimeToolsModule+"@"+runtimeToolsVersion)
	if err != nil {
		return fmt.Errorf("fetch from the Go module proxy ($GOPROXY): %w", err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download: %q: %v %s", out, err, mod.Error)
	}
	// runtimetest runs in the suite's busybox root: static.
	if _, err := goCmd(mod.Dir, []string{"CGO_ENABLED=0"}, "build", "-mod=readonly", "-trimpath",
		"-tags", "netgo osusergo", "-o", filepath.Join(tmp, "runtimetest"), "./cmd/runtimetest"); err != nil {
		return fmt.Errorf("build runtimetest: %w", err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "validation"), 0o755); err != nil {
		return err
	}
	if _, err := goCmd(mod.Dir, nil, "build", "-mod=readonly", "-trimpath",
		"-o", filepath.Join(tmp, "validation")+"/", "./validation/..."); err != nil {
		return fmt.Errorf("build the validation programs: %w", err)
	}
	rootfs, err := os.ReadFile(filepath.Join(mod.Dir, "rootfs-amd64.tar.gz"))
	if err != nil {
		return fmt.Errorf("the suite's root filesystem: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "rootfs-amd64.tar.gz"), rootfs, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir) // an incomplete one
	return os.Rename(tmp, dir)
}

// runtimeToolsPrograms lists the built validation programs.
func runtimeToolsPrograms(tools string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(tools, "validation"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no validation programs", tools)
	}
	sort.Slice(names, func(i, j int) bool {
		si, sj := slowRank(names[i]), slowRank(names[j])
		if si != sj {
			return si < sj
		}
		return names[i] < names[j]
	})
	return names, nil
}

func slowRank(name string) int {
	for i, n := range runtimeToolsSlowFirst {
		if n == name {
			return i
		}
	}
	return len(runtimeToolsSlowFirst)
}

// vcRuntimeWrapper writes a RUNTIME for the suite in dir: vc-runtime with
// a state root of its own (the programs pass no --root), and returns the
// environment the program runs with.
func vcRuntimeWrapper(t *testing.T, dir string) []string {
	t.Helper()
	root := filepath.Join(dir, "r")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(dir, "vc-runtime")
	script := fmt.Sprintf("#!/bin/sh\nexport TMPDIR=%q\nexec %q --root %q \"$@\"\n", os.TempDir(), runtimeBin, root)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"RUNTIME=" + wrapper, "VC_AGENT=" + agentBin, "VC_DATA_ROOT=" + dataRoot, "VC_ACCEL=tcg"}
}

// runValidation runs the programs, parallel at a time, each in a
// subtest of label, and returns their results.
func runValidation(t *testing.T, label, tools string, names []string, parallel int, env func(*testing.T, string) []string) map[string]*tapResult {
	var mu sync.Mutex
	results := map[string]*tapResult{}
	sem := make(chan struct{}, parallel)
	t.Run(label, func(t *testing.T) {
		for _, name := range names {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				r := runProgram(t, tools, name, env)
				t.Logf("%s (%v)", r, r.took.Round(time.Second))
				mu.Lock()
				results[name] = r
				mu.Unlock()
			})
		}
	})
	return results
}

// runProgram runs one validation program in a directory of its own (its
// TMPDIR, where its bundles go, and vc-runtime's state root), removes any
// container it left, and parses its TAP.
func runProgram(t *testing.T, tools, name string, env func(*testing.T, string) []string) *tapResult {
	// Short: the VM's sockets are under the state root.
	dir, err := os.MkdirTemp("", "vc-rtt-")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable, as /tmp is: a container's mapped root (runc's
	// linux_uid_mappings) must reach its bundle.
	tmp := filepath.Join(dir, "t")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runtimeToolsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "validation", name))
	cmd.Dir = tools
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Env = append(cmd.Env, env(t, dir)...)
	// A timeout kills the program and the runtime command it waits for.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	r := parseTAP(stdout.String())
	r.stderr, r.took = stderr.String(), time.Since(start)
	r.exit = cmd.ProcessState.ExitCode()
	r.timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	cleanProgram(t, dir)
	return r
}

// cleanProgram removes what a program left: containers (a program killed
// at its timeout, or one that does not delete its own), bundles and their
// mounts.
func cleanProgram(t *testing.T, dir string) {
	root := filepath.Join(dir, "r")
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, runtimeBin, "--root", root, "delete", "--force", e.Name())
		out, err := cmd.CombinedOutput()
		cancel()
		t.Logf("left behind: container %s: delete --force: %v %s", e.Name(), err, out)
	}
	// A program whose container shares the host's mount namespace
	// (linux_ns_itype) leaves runc's mounts in its bundle.
	if mps, _ := mount.Under(dir); len(mps) > 0 {
		t.Logf("left behind: mounts %v", mps)
	}
	if err := mount.RemoveAll(dir); err != nil {
		t.Errorf("remove what the program left: %v", err)
	}
}

// tapResult is what a program printed (TAP version 13) and how it ended.
type tapResult struct {
	plan     int // -1: no plan line
	ok       int
	notOK    []string
	exit     int
	timedOut bool
	stdout   string
	stderr   string
	took     time.Duration
}

var (
	tapPlan = regexp.MustCompile(`^1\.\.(\d+)`)
	tapLine = regexp.MustCompile(`^(not )?ok\b`)
)

func parseTAP(out string) *tapResult {
	r := &tapResult{plan: -1, stdout: out}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// A program may print several streams, each with its plan
		// (linux_cgroups_cpus: 1..112, then 1..0 for its empty case).
		if m := tapPlan.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			r.plan = max(r.plan, 0) + n
			continue
		}
		if m := tapLine.FindStringSubmatch(line); m != nil {
			if m[1] != "" {
				r.notOK = append(r.notOK, line)
			} else {
				r.ok++
			}
		}
	}
	return r
}

// pass: the program exited 0 with a plan of at least one test, and every
// test it planned was ok (a skip is an ok, as in TAP).
func (r *tapResult) pass() bool {
	return r != nil && !r.timedOut && r.exit == 0 && r.plan > 0 && len(r.notOK) == 0 && r.ok == r.plan
}

func (r *tapResult) String() string {
	if r == nil {
		return "did not run"
	}
	var parts []string
	switch {
	case r.timedOut:
		parts = append(parts, fmt.Sprintf("timed out after %v", runtimeToolsTimeout))
	case r.exit != 0:
		parts = append(parts, fmt.Sprintf("exit %d", r.exit))
	}
	switch {
	case r.plan < 0:
		parts = append(parts, "no plan")
	case r.plan == 0:
		parts = append(parts, "no tests (1..0)")
	}
	parts = append(parts, fmt.Sprintf("%d ok, %d not ok of %d", r.ok, len(r.notOK), r.plan))
	for i, l := range r.notOK {
		if i == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, l)
	}
	return strings.Join(parts, "; ")
}

// short is the result for a table: pass, or ok/planned.
func (r *tapResult) short() string {
	switch {
	case r == nil:
		return "not run"
	case r.pass():
		return fmt.Sprintf("pass (%d)", r.ok)
	case r.timedOut:
		return fmt.Sprintf("timeout (%d ok, %d not ok)", r.ok, len(r.notOK))
	case r.plan <= 0:
		return fmt.Sprintf("fail (exit %d, no tests)", r.exit)
	}
	return fmt.Sprintf("fail (%d/%d ok)", r.ok, r.plan)
}

// tail is the end of the program's output, for a failure's report.
func (r *tapResult) tail() string {
	cut := func(s string, n int) string {
		if len(s) > n {
			return "..." + s[len(s)-n:]
		}
		return s
	}
	return "stdout: " + cut(r.stdout, 3000) + "\nstderr: " + cut(r.stderr, 2000)
}
