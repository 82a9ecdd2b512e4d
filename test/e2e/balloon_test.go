package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// Memory a container frees goes back to the host: the VM's balloon
// reports the guest's free blocks and QEMU drops them from its RSS. A
// container holds 128 MiB of anonymous memory (dd's buffer), QEMU's RSS
// grows by about that much; the container is killed and within a minute
// QEMU's RSS is back down by at least 3/4 of it. (Without the balloon,
// the RSS would stay: a guest never hands memory back by itself.)
func TestFreePageReportingReturnsFreedMemory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(dataRoot + "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	const id = "e2e-balloon"
	s := newSandbox(ctx, t, id, "")
	pid := s.Status().VMPid
	if pid <= 0 {
		t.Fatalf("no VM pid in the sandbox's status")
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !strings.Contains(string(cmdline), "free-page-reporting=on") {
		t.Fatalf("QEMU runs without free page reporting: %q", strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	// The idle floor, once the boot's own freed memory has been reported.
	time.Sleep(5 * time.Second)
	idle := vmRSSMiB(t, pid)

	const hold = 128
	spec := oci.DefaultSpec([]string{"sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=%dM count=1 | sleep 600", hold)}, nil, "/", false)
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "hog", Rootfs: root, Spec: spec}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := s.Container("hog").Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	held := idle
	for deadline := time.Now().Add(2 * time.Minute); held < idle+hold*3/4; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's RSS never grew by %d MiB while the container held %d MiB: idle %d MiB, now %d MiB", hold*3/4, hold, idle, held)
		}
		held = vmRSSMiB(t, pid)
	}
	// The threshold is met before dd has touched all of its buffer: the
	// most the RSS reaches while it settles.
	for last, settled := held, time.Now().Add(10*time.Second); time.Now().Before(settled); last = held {
		time.Sleep(500 * time.Millisecond)
		if held = max(held, vmRSSMiB(t, pid)); held-last <= 1 && held >= idle+hold {
			break
		}
	}

	if err := s.Container("hog").Kill(ctx, uint32(unix.SIGKILL), true); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if _, err := s.Container("hog").WaitProcess(ctx, "hog"); err != nil {
		t.Fatalf("wait: %v", err)
	}
	freed := time.Now()
	const bound = time.Minute
	want := held - hold*3/4
	now := held
	for now > want {
		if time.Since(freed) > bound {
			t.Fatalf("QEMU's RSS did not give back the %d MiB the container freed within %s: idle %d MiB, holding %d MiB, now %d MiB (gave back %d MiB, want at least %d)",
				hold, bound, idle, held, now, held-now, hold*3/4)
		}
		time.Sleep(500 * time.Millisecond)
		now = vmRSSMiB(t, pid)
	}
	t.Logf("QEMU RSS: idle %d MiB, holding %d MiB, %s after the container exited %d MiB", idle, held, time.Since(freed).Round(100*time.Millisecond), now)
}

// vmRSSMiB is a process's resident set (VmRSS) in MiB.
func vmRSSMiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kib / 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
