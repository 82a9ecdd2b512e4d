package hotplug

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fakeSysfs: cpu0 (no online file), cpu1 online, cpu2 and cpu10 offline;
// memory0 online, memory1 and memory3 offline.
func fakeSysfs(t *testing.T) string {
	s := t.TempDir()
	write(t, s+"/devices/system/cpu/possible", "0-3,8-11\n")
	os.MkdirAll(s+"/devices/system/cpu/cpu0", 0o755)
	os.MkdirAll(s+"/devices/system/cpu/cpufreq", 0o755)
	write(t, s+"/devices/system/cpu/cpu1/online", "1\n")
	write(t, s+"/devices/system/cpu/cpu2/online", "0\n")
	write(t, s+"/devices/system/cpu/cpu10/online", "0\n")
	write(t, s+"/devices/system/memory/block_size_bytes", "8000000\n")
	write(t, s+"/devices/system/memory/memory0/state", "online\n")
	write(t, s+"/devices/system/memory/memory1/state", "offline\n")
	write(t, s+"/devices/system/memory/memory3/state", "offline\n")
	return s
}

func TestPossibleCPUs(t *testing.T) {
	s := fakeSysfs(t)
	if n, err := PossibleCPUs(s); err != nil || n != 8 {
		t.Fatalf("PossibleCPUs = %d, %v", n, err)
	}
	for in, want := range map[string]int{"0": 1, "0-1": 2, "": 0, "0,2,4-5": 4} {
		if n, err := countList(in); err != nil || n != want {
			t.Errorf("countList(%q) = %d, %v", in, n, err)
		}
	}
	for _, bad := range []string{"x", "3-1", "1-x"} {
		if _, err := countList(bad); err == nil {
			t.Errorf("countList(%q) accepted", bad)
		}
	}
}

func TestOnlineCPUs(t *testing.T) {
	s := fakeSysfs(t)
	n, err := OnlineCPUs(context.Background(), s, 1, time.Millisecond)
	if err != nil || n != 1 {
		t.Fatalf("OnlineCPUs(1) = %d, %v", n, err)
	}
	// The lowest-numbered offline CPU went first.
	if read(t, s+"/devices/system/cpu/cpu2/online") != "1" || read(t, s+"/devices/system/cpu/cpu10/online") != "0\n" {
		t.Fatal("wrong CPU brought online")
	}
	// A CPU that shows up late is waited for.
	go func() {
		time.Sleep(50 * time.Millisecond)
		write(t, s+"/devices/system/cpu/cpu11/online", "0")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n, err = OnlineCPUs(ctx, s, 2, 10*time.Millisecond)
	if err != nil || n != 2 {
		t.Fatalf("OnlineCPUs(2) = %d, %v", n, err)
	}
	if read(t, s+"/devices/system/cpu/cpu11/online") != "1" {
		t.Fatal("late CPU not brought online")
	}
	// None left: the wait ends with an error saying how far it got.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	n, err = OnlineCPUs(ctx, s, 1, 10*time.Millisecond)
	if n != 0 || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("OnlineCPUs with none offline = %d, %v", n, err)
	}
}

func TestOnlineMemory(t *testing.T) {
	s := fakeSysfs(t)
	n, err := OnlineMemory(s)
	if err != nil || n != 2 {
		t.Fatalf("OnlineMemory = %d, %v", n, err)
	}
	for _, b := range []string{"memory1", "memory3"} {
		if got := read(t, s+"/devices/system/memory/"+b+"/state"); got != "online" {
			t.Errorf("%s state %q", b, got)
		}
	}
	if n, err := OnlineMemory(t.TempDir()); err != nil || n != 0 {
		t.Fatalf("OnlineMemory without memory hotplug = %d, %v", n, err)
	}
}

func TestProbe(t *testing.T) {
	s := fakeSysfs(t)
	if ProbeSupported(s) {
		t.Fatal("probe supported without a probe file")
	}
	if err := ProbeMemory(s, []uint64{0x100000000}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("ProbeMemory without probe file = %v", err)
	}
	// A plain file stands in for the probe file.
	p := s + "/devices/system/memory/probe"
	write(t, p, "")
	if !ProbeSupported(s) {
		t.Fatal("probe not supported with a probe file")
	}
	if err := ProbeMemory(s, []uint64{0x100000000, 0x108000000}); err != nil {
		t.Fatal(err)
	}
	// Each write truncates the plain file: the last address remains.
	if got := read(t, p); got != "0x108000000" {
		t.Fatalf("probe file %q", got)
	}
}

func TestMemBlockSize(t *testing.T) {
	s := fakeSysfs(t)
	if v, err := MemBlockSize(s); err != nil || v != 0x8000000 {
		t.Fatalf("MemBlockSize = %#x, %v", v, err)
	}
	if v, err := MemBlockSize(t.TempDir()); err != nil || v != 0 {
		t.Fatalf("MemBlockSize without memory hotplug = %d, %v", v, err)
	}
	write(t, s+"/devices/system/memory/block_size_bytes", "zz\n")
	if _, err := MemBlockSize(s); err == nil {
		t.Fatal("bad block size accepted")
	}
}

func TestRealSysfsReadOnly(t *testing.T) {
	if _, err := os.Stat("/sys/devices/system/cpu/possible"); err != nil {
		t.Skip("no /sys/devices/system/cpu/possible on this machine")
	}
	n, err := PossibleCPUs("/sys")
	if err != nil || n < 1 {
		t.Fatalf("PossibleCPUs(/sys) = %d, %v", n, err)
	}
	if _, err := MemBlockSize("/sys"); err != nil {
		t.Fatal(err)
	}
}
