package shim

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	taskv2 "github.com/containerd/containerd/api/runtime/task/v2"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/virtcontainers/vc/internal/shim/annotations"
	"github.com/virtcontainers/vc/pkg/vc"
)

func TestGroupID(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		ann      map[string]string
		want     string
		errHas   string
	}{
		{"ctr run", "c1", nil, "c1", ""},
		{"pod sandbox", "pod1", map[string]string{annotations.CRIContainerType: "sandbox", annotations.CRISandboxID: "pod1"}, "pod1", ""},
		{"pod container", "c2", map[string]string{annotations.CRIContainerType: "container", annotations.CRISandboxID: "pod1"}, "pod1", ""},
		{"sandbox id only", "c3", map[string]string{annotations.CRISandboxID: "pod1"}, "pod1", ""},
		{"container without sandbox", "c4", map[string]string{annotations.CRIContainerType: "container"}, "", annotations.CRISandboxID},
		{"unknown type", "c5", map[string]string{annotations.CRIContainerType: "vm"}, "", `"vm": unknown value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := groupID(tc.id, tc.ann)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("groupID = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestBundleAnnotations(t *testing.T) {
	dir := t.TempDir()
	if _, err := bundleAnnotations(dir); err == nil {
		t.Fatal("no config.json: no error")
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"p"}}`), 0o600)
	ann, err := bundleAnnotations(dir)
	if err != nil || ann[annotations.CRISandboxID] != "p" {
		t.Fatalf("annotations = %v, %v", ann, err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{`), 0o600)
	if _, err := bundleAnnotations(dir); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("corrupt config.json: err = %v", err)
	}
}

func TestParseOutput(t *testing.T) {
	for _, tc := range []struct {
		stdout, stderr string
		kind           outputKind
		path           string
		errHas         string
	}{
		{"", "", outputNone, "", ""},
		{"/run/containerd/fifo/1/c-stdout", "/run/containerd/fifo/1/c-stderr", outputFIFO, "/run/containerd/fifo/1/c-stdout", ""},
		{"", "/x/err", outputFIFO, "", ""},
		{"fifo:///x/out", "", outputFIFO, "/x/out", ""},
		{"binary:///usr/bin/logger?id=1&tag=x", "", outputBinary, "/usr/bin/logger", ""},
		{"binary-v2:///usr/bin/logger", "", outputBinary, "/usr/bin/logger", ""},
		{"file:///var/log/c.log", "", outputFile, "/var/log/c.log", ""},
		{"binary://", "", 0, "", "no logging binary path"},
		{"file://relative", "", 0, "", "want file:///absolute/path"},
		{"tcp://host:1", "", 0, "", `unknown scheme "tcp"`},
		{"%zz", "", 0, "", "stdout"},
	} {
		kind, u, err := parseOutput(tc.stdout, tc.stderr)
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("%q: err = %v, want invalid argument with %q", tc.stdout, err, tc.errHas)
			}
			continue
		}
		if err != nil || kind != tc.kind {
			t.Errorf("%q: kind %s, %v; want %s", tc.stdout, kind, err, tc.kind)
			continue
		}
		if tc.path != "" && (u == nil || u.Path != tc.path) {
			t.Errorf("%q: url %v, want path %s", tc.stdout, u, tc.path)
		}
	}
	_, u, _ := parseOutput("binary:///bin/l?a=1&b=2&c", "")
	args := strings.Join(binaryArgs(u), " ")
	for _, want := range []string{"a 1", "b 2", "c"} {
		if !strings.Contains(args, want) {
			t.Errorf("binary args %q lack %q", args, want)
		}
	}
}

func testLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestFileOutput: file:// sends both streams to one file, appended.
func TestFileOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "c.log")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("before\n"), 0o644)
	p, err := openIO(context.Background(), testLog(), "ns", "c", stdio{Stdout: "file://" + path, Stderr: "file://" + path})
	if err != nil {
		t.Fatal(err)
	}
	p.vcIO().Stdout.Write([]byte("out\n"))
	p.vcIO().Stderr.Write([]byte("err\n"))
	p.closeAll()
	b, _ := os.ReadFile(path)
	if string(b) != "before\nout\nerr\n" {
		t.Fatalf("log = %q", b)
	}
}

// TestFIFOOutput: FIFO paths as ctr makes them; with a terminal, no stderr.
func TestFIFOOutput(t *testing.T) {
	dir := t.TempDir()
	out, errp, in := filepath.Join(dir, "out"), filepath.Join(dir, "err"), filepath.Join(dir, "in")
	for _, f := range []string{out, errp, in} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// containerd's side: readers of the output, writer of the input.
	rOut := openAsync(t, out, os.O_RDONLY)
	rErr := openAsync(t, errp, os.O_RDONLY)
	p, err := openIO(context.Background(), testLog(), "ns", "c", stdio{Stdin: in, Stdout: out, Stderr: errp})
	if err != nil {
		t.Fatal(err)
	}
	wIn, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	vio := p.vcIO()
	go vio.Stdout.Write([]byte("hello"))
	go vio.Stderr.Write([]byte("oops"))
	if got := readN(t, <-rOut, 5); got != "hello" {
		t.Fatalf("stdout FIFO read %q", got)
	}
	if got := readN(t, <-rErr, 4); got != "oops" {
		t.Fatalf("stderr FIFO read %q", got)
	}
	wIn.Write([]byte("input"))
	if got := readN(t, vio.Stdin, 5); got != "input" {
		t.Fatalf("stdin read %q", got)
	}
	// containerd closes its end, then CloseIO: the copy sees EOF.
	wIn.Close()
	p.closeStdin()
	eof := make(chan error, 1)
	go func() { _, err := vio.Stdin.Read(make([]byte, 1)); eof <- err }()
	select {
	case err := <-eof:
		if err != io.EOF {
			t.Fatalf("stdin after CloseIO: %v, want EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stdin not at EOF after CloseIO")
	}
	p.closeAll()

	tty, err := openIO(context.Background(), testLog(), "ns", "c", stdio{Stdout: out, Stderr: errp, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	if tty.vcIO().Stderr != nil {
		t.Fatal("a terminal process got a stderr stream")
	}
	tty.closeAll()
}

func openAsync(t *testing.T, path string, flag int) <-chan *os.File {
	ch := make(chan *os.File, 1)
	go func() {
		f, err := os.OpenFile(path, flag, 0)
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		t.Cleanup(func() { f.Close() })
		ch <- f
	}()
	return ch
}

func readN(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBinaryOutput runs a logging program the way containerd's binary://
// loggers are run: output on fds 3 and 4, readiness on fd 5, the query as
// arguments and the container in the environment.
func TestBinaryOutput(t *testing.T) {
	dir := t.TempDir()
	logger := filepath.Join(dir, "logger.sh")
	outFile := filepath.Join(dir, "got")
	script := `#!/bin/sh
exec 5>&-
{ echo "args:$*"; echo "id:$CONTAINER_ID ns:$CONTAINER_NAMESPACE"; cat <&3; cat <&4; } > ` + outFile + `
`
	if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := openIO(context.Background(), testLog(), "k8s.io", "c9", stdio{Stdout: "binary://" + logger + "?tag=t1", Stderr: "binary://" + logger + "?tag=t1"})
	if err != nil {
		t.Fatal(err)
	}
	vio := p.vcIO()
	vio.Stdout.Write([]byte("to-stdout\n"))
	vio.Stderr.Write([]byte("to-stderr\n"))
	p.closeAll()
	deadline := time.Now().Add(10 * time.Second)
	want := "args:tag t1\nid:c9 ns:k8s.io\nto-stdout\nto-stderr\n"
	var got []byte
	for time.Now().Before(deadline) {
		got, _ = os.ReadFile(outFile)
		if string(got) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("logger wrote %q, want %q", got, want)
}

func TestBinaryOutputNotReady(t *testing.T) {
	_, err := openIO(context.Background(), testLog(), "ns", "c", stdio{Stdout: "binary-v2:///bin/true"})
	if err == nil || !strings.Contains(err.Error(), "before it was ready") {
		t.Fatalf("binary-v2 logger that exits at once: err = %v", err)
	}
	_, err = openIO(context.Background(), testLog(), "ns", "c", stdio{Stdout: "binary:///nonexistent/logger"})
	if err == nil || !strings.Contains(err.Error(), "start logging binary") {
		t.Fatalf("missing logger: err = %v", err)
	}
}

func TestToMetrics(t *testing.T) {
	v1 := &vc.ContainerStats{
		CPU: &vc.CPUStats{TotalNs: 1000, PerCPUNs: []uint64{600, 400}, KernelNs: 300, UserNs: 700, Periods: 5, ThrottledPeriods: 2, ThrottledNs: 9},
		Memory: &vc.MemoryStats{
			Cache: 50,
			Usage: vc.MemoryData{Usage: 4096, MaxUsage: 8192, Failcnt: 1, Limit: 1 << 30},
			Stats: map[string]uint64{"rss": 3000, "total_rss": 3100, "total_inactive_file": 1000, "inactive_file": 900, "pgfault": 7, "total_pgfault": 8},
		},
		Pids:    &vc.PidsStats{Current: 3, Limit: 100},
		Blkio:   &vc.BlkioStats{ServiceBytes: []vc.BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 42}}},
		Hugetlb: map[string]vc.HugetlbStats{"2MB": {Usage: 1, MaxUsage: 2, Failcnt: 3}, "1GB": {}},
		Network: []vc.NetworkStats{{Name: "eth0", RxBytes: 10, TxBytes: 20, RxPackets: 1, TxDropped: 2}},
	}
	m := toMetrics(v1)
	if m.CPU.Usage.Total != 1000 || m.CPU.Usage.Kernel != 300 || m.CPU.Usage.User != 700 || len(m.CPU.Usage.PerCPU) != 2 || m.CPU.Throttling.ThrottledPeriods != 2 {
		t.Errorf("cpu = %+v", m.CPU)
	}
	mem := m.Memory
	if mem.Usage.Usage != 4096 || mem.Usage.Max != 8192 || mem.Usage.Limit != 1<<30 || mem.Usage.Failcnt != 1 {
		t.Errorf("memory usage = %+v", mem.Usage)
	}
	if mem.RSS != 3000 || mem.TotalRSS != 3100 || mem.TotalInactiveFile != 1000 || mem.InactiveFile != 900 || mem.PgFault != 7 || mem.TotalPgFault != 8 || mem.Cache != 50 || mem.TotalCache != 50 {
		t.Errorf("memory stat = %+v", mem)
	}
	if m.Pids.Current != 3 || m.Pids.Limit != 100 {
		t.Errorf("pids = %+v", m.Pids)
	}
	if e := m.Blkio.IoServiceBytesRecursive; len(e) != 1 || e[0].Op != "Read" || e[0].Value != 42 || e[0].Major != 8 {
		t.Errorf("blkio = %+v", e)
	}
	if len(m.Hugetlb) != 2 || m.Hugetlb[0].Pagesize != "1GB" || m.Hugetlb[1].Pagesize != "2MB" || m.Hugetlb[1].Max != 2 {
		t.Errorf("hugetlb = %+v", m.Hugetlb)
	}
	if len(m.Network) != 1 || m.Network[0].Name != "eth0" || m.Network[0].RxBytes != 10 || m.Network[0].TxDropped != 2 {
		t.Errorf("network = %+v", m.Network)
	}

	// A cgroup v2 guest: memory.stat keys of v2 stand for v1's.
	v2 := &vc.ContainerStats{Memory: &vc.MemoryStats{
		Usage: vc.MemoryData{Usage: 5000},
		Stats: map[string]uint64{"anon": 2000, "file": 1500, "inactive_file": 700, "file_mapped": 30, "pgmajfault": 4},
	}}
	mem = toMetrics(v2).Memory
	if mem.RSS != 2000 || mem.TotalRSS != 2000 || mem.TotalInactiveFile != 700 || mem.TotalCache != 1500 || mem.MappedFile != 30 || mem.TotalPgMajFault != 4 {
		t.Errorf("v2 memory stat = %+v", mem)
	}

	// What containerd decodes: an Any of io.containerd.cgroups.v1.Metrics.
	a, err := typeurl.MarshalAnyToProto(toMetrics(v1))
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != "io.containerd.cgroups.v1.Metrics" {
		t.Errorf("type url %q", a.GetTypeUrl())
	}
	back, err := typeurl.UnmarshalAny(a)
	if err != nil {
		t.Fatal(err)
	}
	if bm, ok := back.(*cg1.Metrics); !ok || bm.Memory.TotalInactiveFile != 1000 {
		t.Errorf("decoded %T %+v", back, back)
	}
	if m := toMetrics(nil); m == nil || m.Memory != nil {
		t.Errorf("nil stats: %+v", m)
	}
}

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(`
state_root = "/run/x"
cpus = 2
memory_mib = 512
enable_annotations = ["cpus", "io.virtcontainers.memory_mib"]
stop_timeout = "3s"
factory = "/var/lib/vc/factory"
vm_cgroup = "all"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateRoot != "/run/x" || cfg.CPUs != 2 || cfg.MemoryMiB != 512 || cfg.StopTimeout.Duration != 3*time.Second || cfg.DataRoot != DefaultConfig().DataRoot || cfg.Accel != "auto" || cfg.Factory != "/var/lib/vc/factory" || cfg.VMCgroup != "all" {
		t.Fatalf("config = %+v", cfg)
	}
	if d := DefaultConfig().VMCgroup; d != "account" {
		t.Errorf("default vm_cgroup %q; want account", d)
	}
	for _, tc := range []struct{ toml, errHas string }{
		{`cpu = 2`, "cpu"},
		{`state_root = "rel"`, "state_root"},
		{`kernel = "/k"`, "kernel"},
		{`enable_annotations = ["cpu"]`, "enable_annotations"},
		{`stop_timeout = "soon"`, "soon"},
		{`stop_timeout = "-1s"`, "stop_timeout"},
		{`memory_mib = 64`, "memory_mib 64: below the minimum of 128"},
		{`cpus = 65`, "cpus 65: more than 64"},
		{`factory = "rel"`, "factory"},
		{`vm_cgroup = "cpu"`, `vm_cgroup "cpu": want "off", "account" or "all"`},
	} {
		_, err := ParseConfig([]byte(tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: err = %v, want one containing %q", tc.toml, err, tc.errHas)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.toml")
	t.Setenv(ConfigEnv, path)
	if _, err := LoadConfig(); err == nil {
		t.Fatal("a missing $VC_SHIM_CONFIG file: no error")
	}
	os.WriteFile(path, []byte(`cpus = 3`), 0o600)
	cfg, err := LoadConfig()
	if err != nil || cfg.CPUs != 3 {
		t.Fatalf("config = %+v, %v", cfg, err)
	}
	os.WriteFile(path, []byte(`shared_fs = "virtio-fs"`), 0o600)
	if cfg, err := LoadConfig(); err != nil || cfg.SharedFS != "virtio-fs" {
		t.Fatalf("shared_fs virtio-fs: config = %+v, %v", cfg, err)
	}
	for conf, want := range map[string]string{
		`shared_fs = "nfs"`: `shared_fs "nfs": want 9p or virtio-fs`,
		"shared_fs = \"virtio-fs\"\nfactory = \"/var/lib/vc/factory\"": `shared_fs "virtio-fs" with factory "/var/lib/vc/factory"`,
	} {
		os.WriteFile(path, []byte(conf), 0o600)
		if _, err := LoadConfig(); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want InvalidArgument naming %q", conf, err, want)
		}
	}
}

// TestV2Bridge: a task API v2 request reaches the v3 service with every
// field, and the v3 answer comes back as v2.
func TestV2Bridge(t *testing.T) {
	in := &taskv2.CreateTaskRequest{ID: "c", Bundle: "/b", Terminal: true, Stdin: "i", Stdout: "o", Stderr: "e",
		Rootfs: []*types.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l"}}}}
	var got *taskAPI.CreateTaskRequest
	out, err := bridge(context.Background(), in, &taskAPI.CreateTaskRequest{}, &taskv2.CreateTaskResponse{},
		func(_ context.Context, r *taskAPI.CreateTaskRequest) (*taskAPI.CreateTaskResponse, error) {
			got = r
			return &taskAPI.CreateTaskResponse{Pid: 42}, nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "c" || got.Bundle != "/b" || !got.Terminal || got.Stdout != "o" || len(got.Rootfs) != 1 || got.Rootfs[0].Options[0] != "lowerdir=/l" {
		t.Fatalf("v3 request = %+v", got)
	}
	if out.Pid != 42 {
		t.Fatalf("v2 response = %+v", out)
	}
	_, err = bridge(context.Background(), &taskv2.KillRequest{ID: "c"}, &taskAPI.KillRequest{}, &taskv2.StateResponse{},
		func(context.Context, *taskAPI.KillRequest) (*taskAPI.StateResponse, error) {
			return nil, errdefs.ErrNotFound
		})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("error through the bridge: %v", err)
	}
}

// TestCheckpointUnimplemented: the edge turns ErrNotImplemented into the
// Unimplemented status, naming the call.
func TestCheckpointUnimplemented(t *testing.T) {
	s := &Service{}
	_, err := s.Checkpoint(context.Background(), &taskAPI.CheckpointTaskRequest{ID: "c1"})
	if err == nil || !strings.Contains(err.Error(), "Checkpoint of c1") || status.Code(err) != codes.Unimplemented || !errdefs.IsNotImplemented(errgrpc.ToNative(err)) {
		t.Fatalf("Checkpoint: %v", err)
	}
}

// The shim sizes a VM it boots with the library's one rule
// (vc.HypervisorConfig.SizeFor, tested in pkg/vc): a pod sandbox by its
// CRI annotations, a single container by its spec; pod_sizing off keeps
// the configured size, and an allowlisted size annotation replaces it.
func TestSandboxConfigSize(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"k", "i"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	base := DefaultConfig()
	base.Kernel, base.Initrd = filepath.Join(dir, "k"), filepath.Join(dir, "i")
	base.CPUs, base.MemoryMiB = 1, 256
	base.MaxCPUs = 1 // the pod's CPUs do not depend on the host's
	pod := &specs.Spec{Annotations: map[string]string{annotations.CRIContainerType: "sandbox", annotations.CRISandboxID: "p1",
		annotations.CRISandboxCPUPeriod: "100000", annotations.CRISandboxCPUQuota: "100000", annotations.CRISandboxMemory: "134217728"}}
	limit := int64(64 << 20)
	single := &specs.Spec{Linux: &specs.Linux{Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}}}
	mib := uint32(512)
	for _, c := range []struct {
		name      string
		sizing    bool
		typ       annotations.ContainerType
		spec      *specs.Spec
		o         annotations.SandboxOverrides
		cpus, mib uint32
	}{
		{"pod: 1 CPU, 128 MiB on top", true, annotations.PodSandbox, pod, annotations.SandboxOverrides{}, 1, 384},
		{"pod, pod_sizing off", false, annotations.PodSandbox, pod, annotations.SandboxOverrides{}, 1, 256},
		{"single container's own limit", true, annotations.SingleContainer, single, annotations.SandboxOverrides{}, 1, 320},
		{"memory annotation replaces", true, annotations.PodSandbox, pod, annotations.SandboxOverrides{MemoryMiB: &mib}, 1, 512},
	} {
		cfg := base
		cfg.PodSizing = c.sizing
		ctr := &container{id: "p1", sandboxID: "p1", typ: c.typ, spec: c.spec}
		scfg, err := (&Service{}).sandboxConfig(context.Background(), cfg, ctr, c.o)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if h := scfg.Hypervisor; h.CPUs != c.cpus || h.MemoryMiB != c.mib {
			t.Errorf("%s: %d CPUs, %d MiB; want %d, %d", c.name, h.CPUs, h.MemoryMiB, c.cpus, c.mib)
		}
	}
	bad := &specs.Spec{Annotations: map[string]string{annotations.CRIContainerType: "sandbox", annotations.CRISandboxCPUPeriod: "100000", annotations.CRISandboxCPUQuota: "x"}}
	cfg := base
	cfg.PodSizing = true
	_, err := (&Service{}).sandboxConfig(context.Background(), cfg, &container{id: "p1", sandboxID: "p1", typ: annotations.PodSandbox, spec: bad}, annotations.SandboxOverrides{})
	if err == nil || !strings.Contains(err.Error(), annotations.CRISandboxCPUQuota) || !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad quota: %v, want an invalid argument naming %s", err, annotations.CRISandboxCPUQuota)
	}
}
