package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/internal/testutil"
)

// The guest, storage and observability RPCs against the real agent,
// running on the host in its own mount and PID namespaces. Nothing here
// changes the host: CopyFile writes below a temporary -copy-root, mounts
// stay in the agent's mount namespace, and the clock, hotplug and swap
// RPCs are only called in ways that must be refused.

func miscCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// miscWant checks that err is a ttRPC status with code whose message names
// field.
func miscWant(t *testing.T, what string, err error, code codes.Code, field string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Errorf("%s: code %v (err %v), want %v", what, got, err, code)
		return
	}
	if field != "" && !strings.Contains(err.Error(), field) {
		t.Errorf("%s: error %q does not name %q", what, err, field)
	}
}

func TestMiscCopyFile(t *testing.T) {
	root := t.TempDir()
	a := testutil.StartAgent(t, "-copy-root", root)
	ctx := miscCtx(t)

	content := make([]byte, 100<<10+17)
	rand.Read(content)
	dest := filepath.Join(root, "dir", "sub", "file.bin")
	const chunk = 32 << 10
	for off := 0; off < len(content); off += chunk {
		end := min(off+chunk, len(content))
		_, err := a.Svc.CopyFile(ctx, &pb.CopyFileRequest{
			Path: dest, FileSize: int64(len(content)), Offset: int64(off), Data: content[off:end],
			FileMode: 0o640, DirMode: 0o750, Uid: 1234, Gid: 2345,
		})
		if err != nil {
			t.Fatalf("chunk at %d: %v", off, err)
		}
		if _, err := os.Stat(dest); (err == nil) != (end == len(content)) {
			t.Fatalf("after the chunk ending at %d of %d: stat %v", end, len(content), err)
		}
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("copied file differs (%d bytes, %v)", len(got), err)
	}
	var st unix.Stat_t
	unix.Stat(dest, &st)
	if st.Mode != unix.S_IFREG|0o640 || st.Uid != 1234 || st.Gid != 2345 {
		t.Fatalf("file mode %o owner %d:%d", st.Mode, st.Uid, st.Gid)
	}
	unix.Stat(filepath.Dir(dest), &st)
	if st.Mode != unix.S_IFDIR|0o750 {
		t.Fatalf("created directory mode %o", st.Mode)
	}
	if ents, _ := os.ReadDir(filepath.Dir(dest)); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}

	// An empty file, a directory and a symbolic link, as Kata's runtime
	// sends for a ConfigMap.
	for _, req := range []*pb.CopyFileRequest{
		{Path: root + "/cm/empty", FileMode: 0o600},
		{Path: root + "/cm/..2025", FileMode: unix.S_IFDIR | 0o755},
		{Path: root + "/cm/..data", FileMode: unix.S_IFLNK | 0o777, FileSize: 6, Data: []byte("..2025")},
	} {
		if _, err := a.Svc.CopyFile(ctx, req); err != nil {
			t.Fatalf("CopyFile %s: %v", req.Path, err)
		}
	}
	if st, err := os.Stat(root + "/cm/empty"); err != nil || st.Size() != 0 {
		t.Fatalf("empty file: %v", err)
	}
	if l, err := os.Readlink(root + "/cm/..data"); err != nil || l != "..2025" {
		t.Fatalf("link: %q %v", l, err)
	}

	// Escapes.
	outside := t.TempDir()
	os.WriteFile(outside+"/victim", []byte("untouched"), 0o644)
	os.Symlink(outside, root+"/link")
	os.Symlink(outside+"/victim", root+"/cm/final")
	for _, p := range []string{
		root + "/../etc/passwd",
		root + "/x/../../etc",
		"relative",
		root,
		root + "/",
		"/etc/shadow",
		root + "x/file",
		root + "/link/victim",
		root + "/link/new",
		root + "/cm/final",
		root + "/cm/..data/x",
	} {
		_, err := a.Svc.CopyFile(ctx, &pb.CopyFileRequest{Path: p, FileSize: 4, Data: []byte("evil"), FileMode: 0o644})
		miscWant(t, "CopyFile "+p, err, codes.InvalidArgument, "path")
	}
	if b, _ := os.ReadFile(outside + "/victim"); string(b) != "untouched" {
		t.Fatalf("a refused copy changed a file outside the root: %q", b)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("a refused copy wrote outside the root: %v", ents)
	}
	for _, tc := range []struct {
		req   *pb.CopyFileRequest
		field string
	}{
		{&pb.CopyFileRequest{Path: root + "/big", FileSize: 1<<30 + 1}, "file_size"},
		{&pb.CopyFileRequest{Path: root + "/neg", FileSize: -1}, "file_size"},
		{&pb.CopyFileRequest{Path: root + "/off", FileSize: 4, Offset: 5}, "offset"},
		{&pb.CopyFileRequest{Path: root + "/past", FileSize: 4, Offset: 2, Data: []byte("abc")}, "data"},
		{&pb.CopyFileRequest{Path: root + "/cm/bad", FileMode: unix.S_IFLNK | 0o777, Data: []byte("../../../etc"), FileSize: 12}, "data"},
	} {
		_, err := a.Svc.CopyFile(ctx, tc.req)
		miscWant(t, "CopyFile "+tc.req.Path, err, codes.InvalidArgument, tc.field)
	}
	// A chunk of a copy that never started.
	_, err = a.Svc.CopyFile(ctx, &pb.CopyFileRequest{Path: root + "/late", FileSize: 8, Offset: 4, Data: []byte("abcd")})
	miscWant(t, "CopyFile without its first chunk", err, codes.FailedPrecondition, "offset")
}

func TestMiscGuestDetails(t *testing.T) {
	a := testutil.StartAgent(t)
	ctx := miscCtx(t)
	d, err := a.Svc.GetGuestDetails(ctx, &pb.GuestDetailsRequest{MemBlockSize: true, MemHotplugProbe: true})
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.Health.Version(ctx, &pb.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ad := d.GetAgentDetails()
	if ad.GetVersion() != v.AgentVersion || ad.GetVersion() == "" {
		t.Errorf("version %q, Health says %q", ad.GetVersion(), v.AgentVersion)
	}
	// The test agent is PID 1 of its PID namespace: it runs as init.
	if !ad.GetInitDaemon() {
		t.Error("init_daemon false for an agent that is PID 1")
	}
	if got := strings.Join(ad.GetStorageHandlers(), ","); got != "9p,blk,ephemeral,local,virtio-fs" {
		t.Errorf("storage handlers %s", got)
	}
	// The agent shares the host's sysfs: it must report what is there.
	var want uint64
	if b, err := os.ReadFile("/sys/devices/system/memory/block_size_bytes"); err == nil {
		want, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	}
	if d.MemBlockSizeBytes != want {
		t.Errorf("mem block size %#x, sysfs says %#x", d.MemBlockSizeBytes, want)
	}
	_, probeErr := os.Stat("/sys/devices/system/memory/probe")
	if d.SupportMemHotplugProbe != (probeErr == nil) {
		t.Errorf("probe support %v, but stat of the probe file says %v", d.SupportMemHotplugProbe, probeErr)
	}

	// MemHotplugByProbe: refused without a probe file; with one, only an
	// empty list is sent (probing memory would change the host).
	_, err = a.Svc.MemHotplugByProbe(ctx, &pb.MemHotplugByProbeRequest{})
	if probeErr != nil {
		miscWant(t, "MemHotplugByProbe", err, codes.FailedPrecondition, "probe")
	} else if err != nil {
		t.Errorf("MemHotplugByProbe with nothing to probe: %v", err)
	}
	// OnlineCPUMem: more CPUs than the machine can have is refused before
	// anything is touched.
	_, err = a.Svc.OnlineCPUMem(ctx, &pb.OnlineCPUMemRequest{NbCpus: 1 << 20, Wait: true})
	miscWant(t, "OnlineCPUMem", err, codes.InvalidArgument, "nb_cpus")
	_, err = a.Svc.AddSwap(ctx, &pb.AddSwapRequest{})
	miscWant(t, "AddSwap without a PCI path", err, codes.InvalidArgument, "PCIPath")
}

var miscSample = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eEInfNa]+$`)

func TestMiscMetrics(t *testing.T) {
	a := testutil.StartAgent(t)
	ctx := miscCtx(t)
	m, err := a.Svc.GetMetrics(ctx, &pb.GetMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	text := m.GetMetrics()
	values := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		if !miscSample.MatchString(line) {
			t.Fatalf("not a sample line: %q", line)
		}
		i := strings.LastIndexByte(line, ' ')
		values[line[:i]] = line[i+1:]
	}
	for _, name := range []string{
		"vc_agent_process_resident_memory_bytes",
		"vc_agent_process_open_fds",
		"vc_agent_go_goroutines",
		"vc_guest_memory_total_bytes",
		"vc_guest_memory_available_bytes",
	} {
		v, err := strconv.ParseFloat(values[name], 64)
		if err != nil || v <= 0 {
			t.Errorf("%s = %q, want a positive number", name, values[name])
		}
	}
	if _, ok := values[`vc_guest_load_average{period="1m"}`]; !ok {
		t.Error("no 1-minute load average")
	}
	if _, ok := values["vc_agent_process_cpu_seconds_total"]; !ok {
		t.Error("no agent CPU time")
	}
	// No policy set (TestPolicyEnforced sets them, in vc-agent-policy).
	if _, ok := values["vc_agent_policy_bytes"]; !ok || strings.Contains(text, "vc_agent_policy_info{") {
		t.Errorf("policy metrics of an agent without a policy: bytes %q, info in:\n%s", values["vc_agent_policy_bytes"], text)
	}
}

func TestMiscVolumes(t *testing.T) {
	a := testutil.StartAgent(t)
	ctx := miscCtx(t)
	dir := t.TempDir()
	os.WriteFile(dir+"/f", make([]byte, 64<<10), 0o644)
	r, err := a.Svc.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: dir})
	if err != nil {
		t.Fatal(err)
	}
	var sfs unix.Statfs_t
	unix.Statfs(dir, &sfs)
	if len(r.Usage) != 2 || r.GetVolumeCondition().GetAbnormal() {
		t.Fatalf("stats %v", r)
	}
	b, in := r.Usage[0], r.Usage[1]
	if b.Unit != pb.VolumeUsage_BYTES || b.Total == 0 || b.Used == 0 || b.Total != sfs.Blocks*uint64(sfs.Frsize) {
		t.Errorf("bytes %v, statfs total %d", b, sfs.Blocks*uint64(sfs.Frsize))
	}
	if in.Unit != pb.VolumeUsage_INODES || in.Total != sfs.Files {
		t.Errorf("inodes %v, statfs %d", in, sfs.Files)
	}
	for _, p := range []string{"", "relative", dir + "/", dir + "/../x"} {
		_, err := a.Svc.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: p})
		miscWant(t, "GetVolumeStats "+p, err, codes.InvalidArgument, "volume_guest_path")
	}
	_, err = a.Svc.GetVolumeStats(ctx, &pb.VolumeStatsRequest{VolumeGuestPath: dir + "/missing"})
	miscWant(t, "GetVolumeStats of a missing path", err, codes.NotFound, "volume_guest_path")

	_, err = a.Svc.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: "relative"})
	miscWant(t, "ResizeVolume relative", err, codes.InvalidArgument, "volume_guest_path")
	_, err = a.Svc.ResizeVolume(ctx, &pb.ResizeVolumeRequest{VolumeGuestPath: dir})
	miscWant(t, "ResizeVolume of a plain directory", err, codes.FailedPrecondition, "not a mount point")
}

func TestMiscDateTimeAndRandom(t *testing.T) {
	a := testutil.StartAgent(t)
	ctx := miscCtx(t)
	// Only refusals: the agent shares the host's clock.
	for _, req := range []*pb.SetGuestDateTimeRequest{
		{Sec: time.Now().Unix(), Usec: 1000000},
		{Sec: time.Now().Unix(), Usec: -1},
		{Sec: -5, Usec: 0},
	} {
		_, err := a.Svc.SetGuestDateTime(ctx, req)
		field := "Usec"
		if req.Sec < 0 {
			field = "Sec"
		}
		miscWant(t, fmt.Sprintf("SetGuestDateTime %d.%d", req.Sec, req.Usec), err, codes.InvalidArgument, field)
	}

	seed := make([]byte, 64)
	rand.Read(seed)
	if _, err := a.Svc.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{Data: seed}); err != nil {
		t.Fatalf("ReseedRandomDev: %v", err)
	}
	_, err := a.Svc.ReseedRandomDev(ctx, &pb.ReseedRandomDevRequest{})
	miscWant(t, "ReseedRandomDev without data", err, codes.InvalidArgument, "data")
}

// agentMount finds mp in the agent's mount table.
func agentMount(t *testing.T, a *testutil.Agent, mp string) (fstype string, ok bool) {
	t.Helper()
	infos, err := mountinfo.Read(fmt.Sprintf("/proc/%d/mountinfo", a.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mountinfo.Lookup(infos, mp)
	return m.FSType, ok
}

// agentTmpfsSize is the size of the tmpfs at mp as the agent sees it.
func agentTmpfsSize(t *testing.T, a *testutil.Agent, mp string) uint64 {
	t.Helper()
	var sfs unix.Statfs_t
	if err := unix.Statfs(fmt.Sprintf("/proc/%d/root%s", a.Cmd.Process.Pid, mp), &sfs); err != nil {
		t.Fatal(err)
	}
	return sfs.Blocks * uint64(sfs.Bsize)
}

func TestMiscEphemeralMounts(t *testing.T) {
	a := testutil.StartAgent(t)
	ctx := miscCtx(t)
	dir := t.TempDir()
	eph, local := dir+"/eph", dir+"/local"
	_, err := a.Svc.UpdateEphemeralMounts(ctx, &pb.UpdateEphemeralMountsRequest{Storages: []*pb.Storage{
		{Driver: "ephemeral", MountPoint: eph, Options: []string{"size=2m", "nodev"}},
		{Driver: "local", MountPoint: local, Options: []string{"mode=0770"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if fstype, ok := agentMount(t, a, eph); !ok || fstype != "tmpfs" {
		t.Fatalf("ephemeral storage: mounted %v, fstype %q", ok, fstype)
	}
	if _, ok := agentMount(t, a, dir); ok {
		t.Fatal("mounted at the wrong place")
	}
	if size := agentTmpfsSize(t, a, eph); size != 2<<20 {
		t.Fatalf("tmpfs size %d, want 2 MiB", size)
	}
	st, err := os.Stat(local)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o770 {
		t.Fatalf("local storage: %v %v", st, err)
	}
	if _, ok := agentMount(t, a, local); ok {
		t.Fatal("local storage was mounted")
	}

	// A second update resizes the tmpfs in place.
	_, err = a.Svc.UpdateEphemeralMounts(ctx, &pb.UpdateEphemeralMountsRequest{Storages: []*pb.Storage{
		{Driver: "ephemeral", MountPoint: eph, Options: []string{"size=4m"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if size := agentTmpfsSize(t, a, eph); size != 4<<20 {
		t.Fatalf("tmpfs size after update %d, want 4 MiB", size)
	}

	// Refusals; none of them mounts anything (the bad storage is last).
	for _, tc := range []struct {
		name     string
		storages []*pb.Storage
		field    string
	}{
		{"unknown driver", []*pb.Storage{{Driver: "ephemeral", MountPoint: dir + "/e2"}, {Driver: "nfs", MountPoint: dir + "/n"}}, "driver"},
		{"9p is no ephemeral storage", []*pb.Storage{{Driver: "9p", Source: "tag", MountPoint: dir + "/n"}}, "driver"},
		{"relative mount point", []*pb.Storage{{Driver: "ephemeral", MountPoint: "run/x"}}, "mount_point"},
		{"unclean mount point", []*pb.Storage{{Driver: "ephemeral", MountPoint: dir + "/a/../b"}}, "mount_point"},
		{"bad local mode", []*pb.Storage{{Driver: "local", MountPoint: dir + "/l2", Options: []string{"mode=999"}}}, "options"},
	} {
		_, err := a.Svc.UpdateEphemeralMounts(ctx, &pb.UpdateEphemeralMountsRequest{Storages: tc.storages})
		miscWant(t, tc.name, err, codes.InvalidArgument, tc.field)
	}
	if _, ok := agentMount(t, a, dir+"/e2"); ok {
		t.Fatal("a refused update mounted its first storage")
	}

	// No virtio-fs here: nothing is stale, nothing else is unmounted.
	if _, err := a.Svc.RemoveStaleVirtiofsShareMounts(ctx, &pb.RemoveStaleVirtiofsShareMountsRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := agentMount(t, a, eph); !ok {
		t.Fatal("RemoveStaleVirtiofsShareMounts unmounted a tmpfs")
	}
}
