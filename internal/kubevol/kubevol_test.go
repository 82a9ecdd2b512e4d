package kubevol_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/guest"
	"github.com/virtcontainers/vc/internal/kubevol"
	"github.com/virtcontainers/vc/internal/kubevol/kubevoltest"
)

type File = kubevoltest.File

func TestMatch(t *testing.T) {
	for src, want := range map[string]string{
		"/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~configmap/cm":    "configmap",
		"/var/lib/vc-kube/kubelet/pods/u/volumes/kubernetes.io~secret/s":   "secret",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/kube-api": "projected",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~downward-api/info/": "downward-api",
		// Not rewritten in place, or a subPath of one (another path):
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/scratch":           "",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap/cm/key":            "",
		"/var/lib/kubelet/pods/u/volume-subpaths/cm/c/0":                            "",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pvc/mount":               "",
		"/data/volumes/kubernetes.io~configmap/cm":                                  "",
		"/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap":                   "",
		"/var/lib/kubelet/pods/u/plugins/kubernetes.io~configmap/volumes/cm-plugin": "",
	} {
		got, ok := kubevol.Match(src)
		if got != want || ok != (want != "") {
			t.Errorf("Match(%q) = %q, %v; want %q", src, got, ok, want)
		}
	}
}

// tree is a directory's every entry: type, permission bits, owner, and a
// file's content or a link's target.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		v := fmt.Sprintf("%o %d:%d", st.Mode, st.Uid, st.Gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			v += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			v += " " + string(b)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diff(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s is %q, want %q (the node's)", what, k, got[k], w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: %s (%q) is not on the node", what, k, g)
		}
	}
}

// sync snapshots the node's dir and applies it to the copy, as the owner
// and the agent do.
func sync(t *testing.T, node, cp string) *pb.SyncWatchedVolumeRequest {
	t.Helper()
	req, err := kubevol.Snapshot(node)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire, as the agent gets it.
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	got := &pb.SyncWatchedVolumeRequest{}
	if err := proto.Unmarshal(b, got); err != nil {
		t.Fatal(err)
	}
	if err := guest.ApplyWatched(cp, got); err != nil {
		t.Fatalf("ApplyWatched: %v", err)
	}
	return req
}

func newVolume(t *testing.T) (node, cp string) {
	d := t.TempDir()
	node, cp = filepath.Join(d, "node"), filepath.Join(d, "copy")
	must(t, os.Mkdir(node, 0o755))
	must(t, os.Mkdir(cp, 0o700))
	return node, cp
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCopyLayout: the copy of a kubelet volume is the node's layout, entry
// for entry (the timestamped directory, ..data, the per-key links, every
// mode and owner), after the first write and after updates that remove a
// key, add one, change a mode (defaultMode) and apply an fsGroup.
func TestCopyLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the copy is chowned to the node's owners")
	}
	node, cp := newVolume(t)
	ts1 := kevWrite(t, node, map[string]File{"a": {Data: "one", Mode: 0o644}, "dir/b": {Data: "two", Mode: 0o600}, "c": {Data: "", Mode: 0o644}}, -1)
	req := sync(t, node, cp)
	if req.DataDir != ts1 {
		t.Errorf("data_dir %q, want %q", req.DataDir, ts1)
	}
	diff(t, "first write", tree(t, cp), tree(t, node))

	// A key removed, one added, a mode changed, a content changed.
	ts2 := kevWrite(t, node, map[string]File{"dir/b": {Data: "two", Mode: 0o400}, "c": {Data: "three", Mode: 0o644}, "d": {Data: "four", Mode: 0o755}}, -1)
	sync(t, node, cp)
	got := tree(t, cp)
	diff(t, "update", got, tree(t, node))
	if _, ok := got["a"]; ok {
		t.Error("the removed key's link a is still in the copy")
	}
	if _, ok := got[ts1]; ok {
		t.Errorf("the previous directory %s is still in the copy", ts1)
	}
	if !strings.HasSuffix(got[ts2+"/dir/b"], " two") || !strings.HasPrefix(got[ts2+"/dir/b"], "100400 ") {
		t.Errorf("dir/b after its mode changed: %q, want mode 100400", got[ts2+"/dir/b"])
	}

	// fsGroup: group 4321 owns everything, setgid directories.
	must(t, os.Chmod(node, 0o750))
	kevWrite(t, node, map[string]File{"c": {Data: "five", Mode: 0o600}}, 4321)
	sync(t, node, cp)
	got = tree(t, cp)
	diff(t, "fsGroup", got, tree(t, node))
	if !strings.HasPrefix(got["."], "42750 0:4321") {
		t.Errorf("the copy's top directory with fsGroup 4321: %q, want 42750 0:4321", got["."])
	}
}

func kevWrite(t *testing.T, dir string, p map[string]File, gid int) string {
	return kubevoltest.KubeletWrite(t, dir, p, gid)
}

// TestCopyEvents: a watcher of the copy sees an update as a watcher of the
// node's directory does: the new directory created, ..data moved to, a
// removed key's link and the previous directory deleted.
func TestCopyEvents(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the copy is chowned to the node's owners")
	}
	node, cp := newVolume(t)
	kevWrite(t, node, map[string]File{"a": {Data: "one", Mode: 0o644}, "b": {Data: "x", Mode: 0o644}}, -1)
	sync(t, node, cp)
	wn, wc := watch(t, node), watch(t, cp)
	ts2 := kevWrite(t, node, map[string]File{"b": {Data: "two", Mode: 0o644}}, -1)
	sync(t, node, cp)
	en, ec := wn(), wc()
	t.Logf("node: %v", en)
	t.Logf("copy: %v", ec)
	for _, want := range []string{"CREATE " + ts2, "MOVED_TO ..data", "DELETE a"} {
		if !slices.Contains(ec, want) {
			t.Errorf("the copy's watcher saw no %q: %v", want, ec)
		}
		if !slices.Contains(en, want) {
			t.Errorf("the node's watcher saw no %q (the test's writer is not the kubelet's): %v", want, en)
		}
	}
	// The order of the commit: the new directory before ..data's swap,
	// the removals after it.
	iCreate, iSwap, iDel := slices.Index(ec, "CREATE "+ts2), slices.Index(ec, "MOVED_TO ..data"), slices.Index(ec, "DELETE a")
	if !(iCreate < iSwap && iSwap < iDel) {
		t.Errorf("the copy's events are out of the atomic writer's order: %v", ec)
	}
	if b, err := os.ReadFile(filepath.Join(cp, "b")); err != nil || string(b) != "two" {
		t.Errorf("the copy's b: %q, %v; want two", b, err)
	}
}

// watch returns the inotify events of dir's top seen so far ("CREATE x"),
// each time it is called.
func watch(t *testing.T, dir string) func() []string {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	_, err = unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_DELETE|unix.IN_MOVED_TO)
	must(t, err)
	return func() []string {
		var out []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if err != nil {
				return out
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
				off += unix.SizeofInotifyEvent + int(ev.Len)
				kind := "?"
				switch {
				case ev.Mask&unix.IN_CREATE != 0:
					kind = "CREATE"
				case ev.Mask&unix.IN_DELETE != 0:
					kind = "DELETE"
				case ev.Mask&unix.IN_MOVED_TO != 0:
					kind = "MOVED_TO"
				}
				out = append(out, kind+" "+name)
			}
		}
	}
}

// TestSnapshotBounds: past MaxBytes or MaxEntries a volume is refused
// with ErrTooBig (the owner then shares it over 9p); a directory without
// ..data with ErrNotAtomic.
func TestSnapshotBounds(t *testing.T) {
	node, _ := newVolume(t)
	kevWrite(t, node, map[string]File{"big": {Data: strings.Repeat("x", kubevol.MaxBytes+1), Mode: 0o644}}, -1)
	if _, err := kubevol.Snapshot(node); !errors.Is(err, kubevol.ErrTooBig) {
		t.Errorf("a file of MaxBytes+1: %v, want ErrTooBig", err)
	}
	node, _ = newVolume(t)
	p := map[string]File{}
	for i := range kubevol.MaxEntries + 1 {
		p[fmt.Sprint("k", i)] = File{Data: "v", Mode: 0o644}
	}
	kevWrite(t, node, p, -1)
	if _, err := kubevol.Snapshot(node); !errors.Is(err, kubevol.ErrTooBig) {
		t.Errorf("MaxEntries+1 keys: %v, want ErrTooBig", err)
	}
	node, _ = newVolume(t)
	kevWrite(t, node, map[string]File{"ok": {Data: strings.Repeat("x", kubevol.MaxBytes-10), Mode: 0o644}}, -1)
	if _, err := kubevol.Snapshot(node); err != nil {
		t.Errorf("a file of MaxBytes-10: %v", err)
	}
	node, _ = newVolume(t)
	must(t, os.WriteFile(filepath.Join(node, "plain"), []byte("x"), 0o644))
	if _, err := kubevol.Snapshot(node); !errors.Is(err, kubevol.ErrNotAtomic) {
		t.Errorf("a plain directory: %v, want ErrNotAtomic", err)
	}
}

// TestApplyRefuses: requests whose paths would leave the copy, or that
// are not the atomic writer's layout, are refused before anything is
// written.
func TestApplyRefuses(t *testing.T) {
	a := guest.New(guest.Config{}, nil)
	dir := &pb.WatchedEntry{Mode: unix.S_IFDIR | 0o755}
	data := &pb.WatchedEntry{Path: "..data", Mode: unix.S_IFLNK | 0o777, Data: []byte("..ts")}
	for name, req := range map[string]*pb.SyncWatchedVolumeRequest{
		"bad id":           {Id: "../x", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{data}},
		"no id":            {},
		"data_dir not ..":  {Id: "a", Root: dir, DataDir: "ts", Links: []*pb.WatchedEntry{data}},
		"data_dir with /":  {Id: "a", Root: dir, DataDir: "../x", Links: []*pb.WatchedEntry{data}},
		"data_dir ..data":  {Id: "a", Root: dir, DataDir: "..data", Links: []*pb.WatchedEntry{data}},
		"entry escapes":    {Id: "a", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{data}, Data: []*pb.WatchedEntry{{Path: "../../etc/passwd", Mode: unix.S_IFREG | 0o644}}},
		"absolute entry":   {Id: "a", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{data}, Data: []*pb.WatchedEntry{{Path: "/etc/passwd", Mode: unix.S_IFREG | 0o644}}},
		"device entry":     {Id: "a", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{data}, Data: []*pb.WatchedEntry{{Path: "dev", Mode: unix.S_IFCHR | 0o644}}},
		"no ..data":        {Id: "a", Root: dir, DataDir: "..ts"},
		"..data elsewhere": {Id: "a", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{{Path: "..data", Mode: unix.S_IFLNK, Data: []byte("/etc")}}},
		"link in a subdir": {Id: "a", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{data, {Path: "x/y", Mode: unix.S_IFLNK, Data: []byte("..data/x")}}},
		"root not a dir":   {Id: "a", Root: &pb.WatchedEntry{Mode: unix.S_IFREG}, DataDir: "..ts", Links: []*pb.WatchedEntry{data}},
		"no size on mount": {Id: "a", Root: dir, DataDir: "..ts", Links: []*pb.WatchedEntry{data}},
	} {
		if _, err := a.SyncWatchedVolume(t.Context(), req); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "invalid argument") {
			t.Errorf("%s: %v, want an invalid argument", name, err)
		}
	}
	if _, err := os.Stat(guest.WatchedRoot); err == nil {
		t.Logf("note: %s exists on this host (another agent test?)", guest.WatchedRoot)
	}
}

// TestWatcher: the watcher calls back for a ..data swap of a directory it
// watches, not for other changes nor after Remove; a directory removed
// drops its watch; Close leaves no goroutine nor descriptor.
func TestWatcher(t *testing.T) {
	fds0, g0 := fds(t), runtime.NumGoroutine()
	node, _ := newVolume(t)
	other, _ := newVolume(t)
	kevWrite(t, node, map[string]File{"a": {Data: "1", Mode: 0o644}}, -1)
	kevWrite(t, other, map[string]File{"a": {Data: "1", Mode: 0o644}}, -1)
	got := make(chan string, 10)
	w, err := kubevol.NewWatcher(func(dir string) { got <- dir })
	must(t, err)
	must(t, w.Add(node))
	must(t, w.Add(other))
	must(t, os.WriteFile(filepath.Join(node, "not-data"), nil, 0o644))
	kevWrite(t, node, map[string]File{"a": {Data: "2", Mode: 0o644}}, -1)
	select {
	case d := <-got:
		if d != node {
			t.Errorf("called back for %s, want %s", d, node)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no call back 10 s after the ..data swap")
	}
	w.Remove(node)
	kevWrite(t, node, map[string]File{"a": {Data: "3", Mode: 0o644}}, -1)
	must(t, os.RemoveAll(other))
	deadline := time.Now().Add(5 * time.Second)
	for w.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := w.Len(); n != 0 {
		t.Errorf("%d directories still watched after one was removed and the other's directory deleted", n)
	}
	select {
	case d := <-got:
		t.Errorf("called back for %s after its Remove or removal", d)
	case <-time.After(300 * time.Millisecond):
	}
	w.Close()
	time.Sleep(50 * time.Millisecond)
	if n := fds(t); n != fds0 {
		t.Errorf("%d descriptors open after Close, %d before the watcher", n, fds0)
	}
	if n := runtime.NumGoroutine(); n > g0 {
		t.Errorf("%d goroutines after Close, %d before the watcher", n, g0)
	}
}

func fds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}
