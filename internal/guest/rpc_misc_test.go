package guest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest/policy"
	"github.com/virtcontainers/vc/internal/guest/reaper"
)

// miscAgent is an agent whose sysfs, procfs and /dev are fake trees, so
// the hotplug, swap and random RPCs touch nothing of the machine.
func miscAgent(t *testing.T) (*Agent, string) {
	t.Helper()
	dir := t.TempDir()
	a := New(Config{
		ContainerRoot: filepath.Join(dir, "containers"),
		SandboxRoot:   filepath.Join(dir, "sandbox"),
		CopyFileRoot:  filepath.Join(dir, "copy"),
	}, reaper.New())
	t.Cleanup(a.Close)
	a.misc.sysfs = filepath.Join(dir, "sys")
	a.misc.dev = filepath.Join(dir, "dev")
	a.misc.deviceTimeout = 100 * time.Millisecond
	for p, content := range map[string]string{
		"sys/devices/system/cpu/possible":            "0-3",
		"sys/devices/system/cpu/cpu1/online":         "1",
		"sys/devices/system/cpu/cpu2/online":         "0",
		"sys/devices/system/cpu/cpu3/online":         "0",
		"sys/devices/system/memory/block_size_bytes": "8000000",
		"sys/devices/system/memory/memory7/state":    "offline",
		"dev/random":                       "",
		"dev/urandom":                      "",
		"copy/.keep":                       "",
		"containers/c1/state.json":         "{}",
		"containers/not-a-container/other": "",
		"sys/bus/pci/devices/0000:00:05.0/virtio2/id": "",
	} {
		p = filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return a, dir
}

func wantErr(t *testing.T, err, sentinel error, field string) {
	t.Helper()
	if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), field) {
		t.Fatalf("err = %v, want %v naming %s", err, sentinel, field)
	}
}

func TestOnlineCPUMem(t *testing.T) {
	a, dir := miscAgent(t)
	ctx := context.Background()
	_, err := a.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{NbCpus: 5, Wait: true})
	wantErr(t, err, errdefs.ErrInvalidArgument, "nb_cpus")
	if _, err := a.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{NbCpus: 2, Wait: true}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cpu/cpu2/online", "cpu/cpu3/online"} {
		if b, _ := os.ReadFile(filepath.Join(dir, "sys/devices/system", f)); string(b) != "1" {
			t.Errorf("%s = %q", f, b)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sys/devices/system/memory/memory7/state")); string(b) != "online" {
		t.Errorf("memory7 state = %q", b)
	}
	// Without wait it answers at once and works in the background.
	cpu3 := filepath.Join(dir, "sys/devices/system/cpu/cpu3/online")
	os.WriteFile(cpu3, []byte("0"), 0o644)
	if _, err := a.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{NbCpus: 1, CpuOnly: true}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(cpu3); string(b) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background OnlineCPUMem did not bring cpu3 online")
		}
	}
	// Asked for more CPUs than are offline, it gives up when the context
	// (or cpuWait) ends.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = a.OnlineCPUMem(cctx, &pb.OnlineCPUMemRequest{NbCpus: 1, Wait: true, CpuOnly: true})
	wantErr(t, err, errdefs.ErrUnavailable, "nb_cpus")
}

func TestGuestDetails(t *testing.T) {
	a, dir := miscAgent(t)
	d, err := a.GetGuestDetails(context.Background(), &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	if err != nil {
		t.Fatal(err)
	}
	if d.MemBlockSizeBytes != 0x8000000 || d.SupportMemHotplugProbe {
		t.Fatalf("details %v", d)
	}
	ad := d.AgentDetails
	if ad.Version != Version || ad.InitDaemon || strings.Join(ad.StorageHandlers, ",") != "9p,blk,ephemeral,local,virtio-fs" {
		t.Fatalf("agent details %v", ad)
	}
	// Not asked, not given.
	d, _ = a.GetGuestDetails(context.Background(), &pb.GuestDetailsRequest{})
	if d.MemBlockSizeBytes != 0 {
		t.Fatal("block size given unasked")
	}

	// Memory probe.
	_, err = a.MemHotplugByProbe(context.Background(), &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{1 << 32}})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "probe")
	probe := filepath.Join(dir, "sys/devices/system/memory/probe")
	os.WriteFile(probe, nil, 0o644)
	if _, err := a.MemHotplugByProbe(context.Background(), &pb.MemHotplugByProbeRequest{MemHotplugProbeAddr: []uint64{0x1_2800_0000}}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(probe); string(b) != "0x128000000" {
		t.Fatalf("probe got %q", b)
	}
	d, _ = a.GetGuestDetails(context.Background(), &pb.GuestDetailsRequest{MemHotplugProbe: true})
	if !d.SupportMemHotplugProbe {
		t.Fatal("probe file not seen")
	}
}

func TestSetGuestDateTimeInvalid(t *testing.T) {
	a, _ := miscAgent(t)
	for _, tc := range []struct {
		sec, usec int64
		field     string
	}{{0, 1000000, "Usec"}, {0, -1, "Usec"}, {-1, 0, "Sec"}} {
		_, err := a.SetGuestDateTime(context.Background(), &pb.SetGuestDateTimeRequest{Sec: tc.sec, Usec: tc.usec})
		wantErr(t, err, errdefs.ErrInvalidArgument, tc.field)
	}
}

func TestReseedFallsBack(t *testing.T) {
	a, dir := miscAgent(t)
	_, err := a.ReseedRandomDev(context.Background(), &pb.ReseedRandomDevRequest{})
	wantErr(t, err, errdefs.ErrInvalidArgument, "data")
	_, err = a.ReseedRandomDev(context.Background(), &pb.ReseedRandomDevRequest{Data: make([]byte, maxSeed+1)})
	wantErr(t, err, errdefs.ErrInvalidArgument, "data")
	// The fake /dev/random is a plain file: the ioctl fails, the data
	// goes to urandom.
	if _, err := a.ReseedRandomDev(context.Background(), &pb.ReseedRandomDevRequest{Data: []byte("seed")}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dev/urandom")); string(b) != "seed" {
		t.Fatalf("urandom got %q", b)
	}
}

func TestAddSwapErrors(t *testing.T) {
	a, _ := miscAgent(t)
	ctx := context.Background()
	_, err := a.AddSwap(ctx, &pb.AddSwapRequest{})
	wantErr(t, err, errdefs.ErrInvalidArgument, "PCIPath")
	_, err = a.AddSwap(ctx, &pb.AddSwapRequest{PCIPath: []uint32{0x40}})
	wantErr(t, err, errdefs.ErrInvalidArgument, "PCIPath")
	// Slot 6 has nothing; slot 5 has a virtio device without a disk.
	for _, slot := range []uint32{6, 5} {
		_, err = a.AddSwap(ctx, &pb.AddSwapRequest{PCIPath: []uint32{slot}})
		wantErr(t, err, errdefs.ErrNotFound, "PCIPath")
	}
}

func TestPolicyAndMetrics(t *testing.T) {
	a, _ := miscAgent(t)
	ctx := context.Background()
	_, err := a.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: strings.Repeat("x", maxPolicy+1)})
	wantErr(t, err, errdefs.ErrInvalidArgument, "policy")
	m, err := a.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Metrics, "vc_agent_policy_info{") {
		t.Fatal("a policy is reported before any was set")
	}
	_, err = a.SetPolicy(ctx, &pb.SetPolicyRequest{Policy: "package agent_policy\ndefault allow := true\n"})
	wants := []string{"vc_agent_policy_bytes 0\n"}
	if policy.Built {
		if err != nil {
			t.Fatal(err)
		}
		wants = []string{`vc_agent_policy_info{sha256="`, "vc_agent_policy_bytes 43\n"}
	} else {
		wantErr(t, err, errdefs.ErrNotImplemented, "vc-agent-policy")
	}
	m, _ = a.GetMetrics(ctx, &pb.GetMetricsRequest{})
	for _, want := range append(wants,
		"vc_agent_containers 1\n",
		`vc_agent_info{version="`+Version+`"} 1`,
		"vc_agent_copy_file_pending 0\n",
		"vc_agent_process_resident_memory_bytes ",
		"vc_guest_memory_total_bytes ",
	) {
		if !strings.Contains(m.Metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, m.Metrics)
		}
	}
}

func TestCopyFileRootBad(t *testing.T) {
	a := New(Config{CopyFileRoot: "relative"}, reaper.New())
	defer a.Close()
	_, err := a.CopyFile(context.Background(), &pb.CopyFileRequest{Path: "/run/x"})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "CopyFile")
}
