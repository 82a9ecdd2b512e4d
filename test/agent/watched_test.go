package agent_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest"
	"github.com/virtcontainers/vc/internal/testutil"
)

// watchedReq is the request for a copy whose timestamped directory ts
// holds files (name -> content), each of mode.
func watchedReq(id, ts string, mode uint32, files map[string]string) *pb.SyncWatchedVolumeRequest {
	req := &pb.SyncWatchedVolumeRequest{
		Id: id, SizeLimit: 1 << 20, DataDir: ts,
		Root:  &pb.WatchedEntry{Mode: unix.S_IFDIR | 0o755},
		Data:  []*pb.WatchedEntry{{Mode: unix.S_IFDIR | 0o755}},
		Links: []*pb.WatchedEntry{{Path: "..data", Mode: unix.S_IFLNK | 0o777, Data: []byte(ts)}},
	}
	for name, data := range files {
		req.Data = append(req.Data, &pb.WatchedEntry{Path: name, Mode: unix.S_IFREG | mode, Data: []byte(data)})
		req.Links = append(req.Links, &pb.WatchedEntry{Path: name, Mode: unix.S_IFLNK | 0o777, Data: []byte("..data/" + name)})
	}
	return req
}

// TestSyncWatchedVolume: a copy made by SyncWatchedVolume (a tmpfs in the
// agent's mount namespace) bound read-only into a container: an inotify
// watcher in the container sees a sync's swap of ..data and a removed
// key's link; a mode changed follows; a sync past the tmpfs's size fails
// leaving the copy as it was (no half-written directory); the copy is
// unmounted by a remove, which may be repeated.
func TestSyncWatchedVolume(t *testing.T) {
	e := newEnv(t)
	rootfs := testutil.BusyboxRootfs(t)
	bin, err := testutil.Build("inotifywatch", "./test/k8s/inotifywatch", []string{"CGO_ENABLED=0"})
	if err != nil {
		t.Fatal(err)
	}
	tools := t.TempDir()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tools, "inotifywatch"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// The host-run agent makes the directory on the host's /run: not
	// left there.
	if _, err := os.Stat(guest.WatchedRoot); os.IsNotExist(err) {
		t.Cleanup(func() { os.Remove(guest.WatchedRoot) })
	}
	vid := fmt.Sprintf("t%08x", rand.Uint32())
	copyDir := filepath.Join(guest.WatchedRoot, vid)
	sync := func(req *pb.SyncWatchedVolumeRequest) error {
		_, err := e.a.Svc.SyncWatchedVolume(e.ctx(30*time.Second), req)
		return err
	}
	if err := sync(watchedReq(vid, "..ts1", 0o644, map[string]string{"k": "one", "gone": "x"})); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	t.Cleanup(func() { sync(&pb.SyncWatchedVolumeRequest{Id: vid, Remove: true}) })
	if !e.mounted(copyDir) {
		t.Fatalf("%s not mounted after the first sync", copyDir)
	}

	id := newID("watched")
	s := spec(rootfs, "/tools/inotifywatch", "/etc/cm")
	s.Mounts = append(s.Mounts,
		&pb.Mount{Destination: "/tools", Source: tools, Type: "bind", Options: []string{"rbind", "ro"}},
		&pb.Mount{Destination: "/etc/cm", Source: copyDir, Type: "bind", Options: []string{"rbind", "ro"}})
	e.run(id, s)
	e.readUntil(id, "", "watching /etc/cm")
	cmd := func(name string, args ...string) string {
		e.exec(id, name, false, args...)
		out := e.readAll(id, name, false) + e.readAll(id, name, true)
		e.wait(id, name)
		return out
	}
	if got := cmd("cat1", "cat", "/etc/cm/k", "/etc/cm/gone"); got != "onex" {
		t.Errorf("the copy's files: %q, want onex", got)
	}

	// An update: k changed (content and mode), gone removed.
	if err := sync(watchedReq(vid, "..ts2", 0o600, map[string]string{"k": "two"})); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	out := e.readUntil(id, "", "event /etc/cm gone")
	for _, want := range []string{"event /etc/cm ..ts2 ", "event /etc/cm ..data_tmp ", "event /etc/cm ..data "} {
		if !strings.Contains(out, want) {
			t.Errorf("the watcher in the container saw no %q:\n%s", want, out)
		}
	}
	if got := cmd("ls", "sh", "-c", "ls -a /etc/cm | tr '\\n' ' '; cat /etc/cm/k; stat -c ' %a' /etc/cm/..data/k"); got != ". .. ..data ..ts2 k two 600\n" {
		t.Errorf("the copy after the update: %q, want \". .. ..data ..ts2 k two 600\"", got)
	}
	if got := cmd("write", "sh", "-c", "echo x > /etc/cm/new"); !strings.Contains(got, "Read-only file system") {
		t.Errorf("a write into the read-only bind of the copy: %q, want EROFS", got)
	}

	// Past the tmpfs's 1 MiB: refused, the copy as it was.
	if err := sync(watchedReq(vid, "..ts3", 0o644, map[string]string{"k": strings.Repeat("x", 2<<20)})); err == nil {
		t.Error("a sync of 2 MiB into a 1 MiB copy succeeded")
	} else {
		t.Logf("a sync past the copy's size: %v", err)
	}
	if got := cmd("ls2", "sh", "-c", "ls -a /etc/cm | tr '\\n' ' '; cat /etc/cm/k"); got != ". .. ..data ..ts2 k two" {
		t.Errorf("the copy after a failed sync: %q, want \". .. ..data ..ts2 k two\"", got)
	}
	// The same directory again: nothing to do.
	if err := sync(watchedReq(vid, "..ts2", 0o600, map[string]string{"k": "two"})); err != nil {
		t.Errorf("a sync of the directory the copy holds: %v", err)
	}

	if _, err := e.a.Svc.RemoveContainer(e.ctx(15*time.Second), &pb.RemoveContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := sync(&pb.SyncWatchedVolumeRequest{Id: vid, Remove: true}); err != nil {
			t.Errorf("remove #%d: %v", i+1, err)
		}
	}
	if e.mounted(copyDir) {
		t.Errorf("%s still mounted after the remove", copyDir)
	}
	if err := sync(&pb.SyncWatchedVolumeRequest{Id: "../x", Remove: true}); err == nil {
		t.Error("a remove of id ../x succeeded")
	}
}
