package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/testutil"
)

// TestOOMEvent: a container that allocates four times its memory limit
// is OOM-killed, and GetOOMEvent names it.
func TestOOMEvent(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)

	// No event while nothing is killed: GetOOMEvent waits.
	_, err := e.a.Svc.GetOOMEvent(e.ctx(300*time.Millisecond), &pb.GetOOMEventRequest{})
	if !isTimeout(err) {
		t.Fatalf("GetOOMEvent with no OOM: %v, want a timeout", err)
	}

	quiet := newID("quiet")
	e.run(quiet, spec(rootfs, "sleep", "1000"))
	id := newID("oom")
	// sort holds its input line in memory: 64 MiB, in a 16 MiB cgroup.
	s := spec(rootfs, "sh", "-c", "head -c 67108864 /dev/zero | tr '\\0' a | sort >/dev/null")
	s.Linux.Resources.Memory = &pb.LinuxMemory{Limit: 16 << 20}
	e.run(id, s)

	ev, err := e.a.Svc.GetOOMEvent(e.ctx(30*time.Second), &pb.GetOOMEventRequest{})
	if err != nil {
		t.Fatalf("GetOOMEvent: %v", err)
	}
	if ev.ContainerId != id {
		t.Errorf("OOM event for %q, want %q", ev.ContainerId, id)
	}
	if st := e.wait(id, ""); st != 137 {
		t.Errorf("status %d, want 137 (sort's SIGKILL)", st)
	}
}

// TestPauseResume: a paused container's counter stops, and goes on from
// where it stopped once resumed. One reader follows the output throughout,
// as the shim does: a read abandoned on a timeout may take output with it.
func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	id := newID("pause")
	e.run(id, spec(testutil.BusyboxRootfs(t), "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done"))
	var (
		mu   sync.Mutex
		seen strings.Builder
	)
	out := func() string { mu.Lock(); defer mu.Unlock(); return seen.String() }
	readCtx, stopReading := context.WithCancel(context.Background())
	readDone := make(chan error, 1)
	go func() {
		for {
			b, err := e.read(readCtx, id, "", false, 4096)
			if err != nil {
				readDone <- err
				return
			}
			mu.Lock()
			seen.Write(b)
			mu.Unlock()
		}
	}()
	defer func() { stopReading(); <-readDone }()
	waitOutput := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out(), want); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %q in the output, got %q", want, out())
			}
		}
	}
	waitOutput("\n3\n")

	if _, err := e.a.Svc.PauseContainer(e.ctx(10*time.Second), &pb.PauseContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("pause: %v", err)
	}
	state, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer/vc", id, "freezer.state"))
	if err != nil || strings.TrimSpace(string(state)) != "FROZEN" {
		t.Errorf("freezer.state %q (%v), want FROZEN", state, err)
	}
	// What was written before the pause arrives; then nothing more comes.
	paused := out()
	for stable := 0; stable < 5; time.Sleep(100 * time.Millisecond) {
		if now := out(); now != paused {
			paused, stable = now, 0
		} else {
			stable++
		}
	}
	time.Sleep(300 * time.Millisecond)
	if now := out(); now != paused {
		t.Fatalf("output of a paused container: %q after %q", now[len(paused):], paused)
	}
	_, err = e.a.Svc.ExecProcess(e.ctx(10*time.Second), &pb.ExecProcessRequest{ContainerId: id, ExecId: "x", Process: &pb.Process{Args: []string{"true"}, Cwd: "/"}})
	wantCode(t, "exec in paused container", err, codes.FailedPrecondition, "paused")
	if _, err = e.a.Svc.PauseContainer(e.ctx(10*time.Second), &pb.PauseContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("pausing a paused container again: %v", err)
	}

	if _, err := e.a.Svc.ResumeContainer(e.ctx(10*time.Second), &pb.ResumeContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	lines := strings.Split(paused, "\n")
	// The last line may have been cut by the pause.
	last, _ := strconv.Atoi(lines[len(lines)-2])
	// The counter goes on from where it stopped.
	waitOutput("\n" + strconv.Itoa(last+2) + "\n")
	if got := out()[len(paused):]; !strings.Contains(paused+got, "\n"+strconv.Itoa(last+1)+"\n") {
		t.Errorf("after resume read %q, want %d then %d", got, last+1, last+2)
	}
	_, err = e.a.Svc.ResumeContainer(e.ctx(10*time.Second), &pb.ResumeContainerRequest{ContainerId: id})
	wantCode(t, "resume a running container", err, codes.FailedPrecondition, "")
}

// TestStats reads a busy container's cgroup statistics.
func TestStats(t *testing.T) {
	e := newEnv(t)
	id := newID("stats")
	// Burn some CPU, hold some memory (a 4 MiB shell variable), idle.
	e.run(id, spec(testutil.BusyboxRootfs(t), "sh", "-c",
		"i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; v=$(head -c 4194304 /dev/zero | tr '\\0' a); sleep 1000 & echo ready; wait"))
	e.readUntil(id, "", "ready")
	r, err := e.a.Svc.StatsContainer(e.ctx(10*time.Second), &pb.StatsContainerRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	cg := r.CgroupStats
	t.Logf("cpu %d ns, memory %d bytes, pids %d, %d network interfaces", cg.GetCpuStats().GetCpuUsage().GetTotalUsage(),
		cg.GetMemoryStats().GetUsage().GetUsage(), cg.GetPidsStats().GetCurrent(), len(r.NetworkStats))
	if cg.GetCpuStats().GetCpuUsage().GetTotalUsage() < uint64(time.Millisecond) {
		t.Errorf("cpu usage %d ns, want at least a millisecond", cg.GetCpuStats().GetCpuUsage().GetTotalUsage())
	}
	if cg.GetMemoryStats().GetUsage().GetUsage() < 1<<20 {
		t.Errorf("memory usage %d, want at least 1 MiB", cg.GetMemoryStats().GetUsage().GetUsage())
	}
	if cg.GetPidsStats().GetCurrent() < 2 {
		t.Errorf("pids %d, want at least 2 (sh and sleep)", cg.GetPidsStats().GetCurrent())
	}
	for _, n := range r.NetworkStats {
		if n.Name == "" || n.Name == "lo" {
			t.Errorf("network stats entry %+v", n)
		}
	}

	// UpdateContainer changes limits: memory and pids.
	_, err = e.a.Svc.UpdateContainer(e.ctx(10*time.Second), &pb.UpdateContainerRequest{ContainerId: id, Resources: &pb.LinuxResources{
		Memory: &pb.LinuxMemory{Limit: 64 << 20},
		Pids:   &pb.LinuxPids{Limit: 50},
	}})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	r, err = e.a.Svc.StatsContainer(e.ctx(10*time.Second), &pb.StatsContainerRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.CgroupStats.GetMemoryStats().GetUsage().GetLimit(); got != 64<<20 {
		t.Errorf("memory limit after update %d, want %d", got, 64<<20)
	}
	if got := r.CgroupStats.GetPidsStats().GetLimit(); got != 50 {
		t.Errorf("pids limit after update %d, want 50", got)
	}
}
