package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

const (
	execRuns  = 50
	slowRuns  = 20
	trueLoops = 100
	rounds    = 5
)

func init() {
	register("exec", execBench)
}

// execBench runs `true` in an idle container execRuns times through the
// whole stack (library, ttRPC, the agent, the container's exec helper)
// and prints its p50 and p99 against the same `true` forked and executed
// by a shell in the guest (no RPC, no container layer), timed over
// trueLoops runs. The note splits the p50 into the ExecProcess RPC (the
// agent starting the process) and the rest (streams and WaitProcess).
// A third row times slowRuns execs through libcontainer's exec, the
// fallback. The three are measured in rounds, interleaved.
//
// VC_BENCH_SHARED_FS=virtio-fs runs it with the files over virtio-fs
// (docs/performance.md, Files).
//
// VC_BENCH_DEBUG=1 turns the agent's debug log on (its per-RPC times, in
// the console log, whose path is printed); figures from such a run are
// not comparable.
func execBench() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(filepath.Join(e.dataRoot, "rootfs"))
	if err != nil {
		return nil, err
	}
	debug := os.Getenv("VC_BENCH_DEBUG") != ""
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "exec", StateRoot: e.stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd, Debug: debug, SharedFS: os.Getenv("VC_BENCH_SHARED_FS")}})
	if err != nil {
		return nil, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	if debug {
		fmt.Fprintln(os.Stderr, "exec bench: console log", s.Status().ConsoleLog)
	}
	spec := oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)
	if debug {
		// The agent's binary, to time its own start in the guest.
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/vc-agent", Type: "bind", Source: filepath.Join(testutil.RepoRoot(), "bin", "vc-agent"), Options: []string{"rbind", "ro"}})
	}
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		return nil, err
	}
	c := s.Container("c")
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	// run execs args in the container as `vc exec` does (the
	// container's own user, capabilities, no_new_privs: what the
	// container's exec helper serves) and returns its output and the
	// time ExecProcess took. slow asks for no_new_privs off, which the
	// helper cannot give: libcontainer's exec.
	run := func(id string, slow bool, args ...string) (string, time.Duration, error) {
		var out bytes.Buffer
		p := oci.DefaultSpec(args, nil, "/", false).Process
		p.Env = []string{"PATH=/bin:/sbin:/usr/bin"}
		p.NoNewPrivileges = !slow
		t := time.Now()
		if err := c.Exec(ctx, id, p); err != nil {
			return "", 0, err
		}
		started := time.Since(t)
		streams := c.IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
		code, err := c.WaitProcess(ctx, id)
		<-streams
		if err == nil && code != 0 {
			err = fmt.Errorf("%q exited %d: %s", args, code, out.String())
		}
		return out.String(), started, err
	}
	// The first exec in the container takes libcontainer's path and
	// starts the container's exec helper in the background; the figures
	// are the execs once it is up, which a process of the container sees.
	t := time.Now()
	if _, _, err := run("first", false, "true"); err != nil {
		return nil, err
	}
	first := time.Since(t)
	for i := 0; ; i++ {
		out, _, err := run(fmt.Sprintf("helper%d", i), false, "sh", "-c", "cat /proc/[0-9]*/comm")
		if err != nil {
			return nil, err
		}
		if strings.Contains(out, "vc-exec-helper") {
			break
		}
		if time.Since(t) > time.Minute {
			return nil, fmt.Errorf("the container's exec helper did not start in a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	helperUp := time.Since(t)
	// What the helper costs the guest's memory (status is readable
	// though the helper is not dumpable; smaps are not).
	mem, _, err := run("helper-mem", false, "sh", "-c", `for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = vc-exec-helper ] && grep -E '^(VmRSS|RssAnon):' $p/status; done; true`)
	if err != nil {
		return nil, err
	}
	rss, anon := statusKiB(mem, "VmRSS:"), statusKiB(mem, "RssAnon:")
	// The execs and the floor's loop in rounds, one after the other, so
	// that the load of the shared machine, which changes within seconds,
	// weighs on both alike.
	var execs, starts, slow []time.Duration
	var loop time.Duration
	for r := range rounds {
		for i := range execRuns / rounds {
			t := time.Now()
			_, started, err := run(fmt.Sprintf("true%d-%d", r, i), false, "true")
			if err != nil {
				return nil, err
			}
			execs = append(execs, time.Since(t))
			starts = append(starts, started)
		}
		for i := range slowRuns / rounds {
			t := time.Now()
			if _, _, err := run(fmt.Sprintf("slow%d-%d", r, i), true, "true"); err != nil {
				return nil, err
			}
			slow = append(slow, time.Since(t))
		}
		out, _, err := run(fmt.Sprintf("loop%d", r), false, "sh", "-c", fmt.Sprintf("time -p sh -c 'i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done'", trueLoops/rounds))
		if err != nil {
			return nil, err
		}
		d, err := timeReal(out)
		if err != nil {
			return nil, err
		}
		loop += d
	}
	floor := (loop / trueLoops).Seconds()
	if debug {
		// What runc init's start costs at least: the agent binary's Go
		// runtime and package inits (it fails on an unknown flag).
		out, _, err := run("agent-start", false, "sh", "-c", "cp /vc-agent /dev/shm/a && /dev/shm/a -x 2>/dev/null; time -p sh -c 'i=0; while [ $i -lt 20 ]; do /dev/shm/a -no-such-flag 2>/dev/null; i=$((i+1)); done'; rm /dev/shm/a")
		if err != nil {
			return nil, err
		}
		d, err := timeReal(out)
		fmt.Fprintf(os.Stderr, "exec bench: the agent binary's start in the guest: %v (%v)\n", d/20, err)
		b, _ := os.ReadFile(s.Status().ConsoleLog)
		os.WriteFile("/tmp/vc-bench-exec-console.log", b, 0o644)
	}
	if os.Getenv("VC_BENCH_EXEC_ALL") != "" {
		fmt.Fprintln(os.Stderr, "exec bench: execs", execs, "starts", starts)
	}
	p50, p99 := pct(execs, 50), pct(execs, 99)
	split := fmt.Sprintf("of %d runs; p50 of ExecProcess %.1f ms, of the rest (streams, WaitProcess) %.1f ms; floor over %d runs; TCG",
		execRuns, ms(pct(starts, 50)), ms(pct(rest(execs, starts), 50)), trueLoops)
	floorName := "`true` forked by a shell in the guest"
	return []row{
		{figure: "exec `true` in a running container, p50 (library -> agent -> exec helper)", unit: "s", value: p50.Seconds(), floor: floor,
			floorName: floorName, note: split},
		{figure: "exec `true` in a running container, p99", unit: "s", value: p99.Seconds(), floor: floor,
			floorName: floorName, note: fmt.Sprintf("of %d runs", execRuns)},
		{figure: "exec `true`, the container's first (libcontainer's exec; starts the helper)", unit: "s", value: first.Seconds(), floor: floor,
			floorName: floorName, note: fmt.Sprintf("the helper was up %.2f s after it began", helperUp.Seconds())},
		{figure: "the exec helper's RSS in the guest", unit: "MiB", value: rss / 1024, note: fmt.Sprintf("%.1f MiB of it anonymous; the rest is the pages of the agent binary (the same file as the agent's, through libcontainer's sealed overlay)", anon/1024)},
		{figure: "exec `true`, libcontainer's exec (the fallback), p50", unit: "s", value: pct(slow, 50).Seconds(), floor: floor,
			floorName: floorName, note: fmt.Sprintf("of %d runs asking for no_new_privs off, which the helper cannot give; p99 %.3f s", slowRuns, pct(slow, 99).Seconds())},
	}, nil
}

func rest(total, part []time.Duration) []time.Duration {
	r := make([]time.Duration, len(total))
	for i := range total {
		r[i] = total[i] - part[i]
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }

// statusKiB returns the value in KiB of the /proc/PID/status line that
// starts with key, or 0.
func statusKiB(status, key string) float64 {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, key); ok {
			var kib float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kib)
			return kib
		}
	}
	return 0
}
