package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mountinfo"
)

type mountCall struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// fakeMounts replaces mount(2) and umount(2) with recorders for the test.
type fakeMounts struct {
	mu       sync.Mutex
	mounts   []mountCall
	unmounts []string
	mountErr error
}

func useFakeMounts(t *testing.T) *fakeMounts {
	t.Helper()
	f := &fakeMounts{}
	oldM, oldU := mountFn, unmountFn
	mountFn = func(source, target, fstype string, flags uintptr, data string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.mountErr != nil {
			return f.mountErr
		}
		f.mounts = append(f.mounts, mountCall{source, target, fstype, flags, data})
		return nil
	}
	unmountFn = func(target string, flags int) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.unmounts = append(f.unmounts, target)
		return nil
	}
	t.Cleanup(func() {
		mountFn, unmountFn = oldM, oldU
		mu.Lock()
		clear(table)
		mu.Unlock()
	})
	return f
}

func wantErr(t *testing.T, err, sentinel error, field string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("err = %v, want %v", err, sentinel)
	}
	if field != "" && !strings.Contains(err.Error(), field) {
		t.Fatalf("err = %v, does not name %q", err, field)
	}
}

func TestValidation(t *testing.T) {
	useFakeMounts(t)
	dir := t.TempDir()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		s     *pb.Storage
		field string
	}{
		{"nil", nil, "storage"},
		{"unknown driver", &pb.Storage{Driver: "nfs", Source: "x", MountPoint: dir + "/a"}, "driver"},
		{"empty driver", &pb.Storage{MountPoint: dir + "/a"}, "driver"},
		{"relative", &pb.Storage{Driver: DriverEphemeral, MountPoint: "run/x"}, "mount_point"},
		{"unclean", &pb.Storage{Driver: DriverEphemeral, MountPoint: dir + "/a/../b"}, "mount_point"},
		{"trailing slash", &pb.Storage{Driver: DriverEphemeral, MountPoint: dir + "/a/"}, "mount_point"},
		{"root", &pb.Storage{Driver: DriverEphemeral, MountPoint: "/"}, "mount_point"},
		{"empty mount point", &pb.Storage{Driver: DriverEphemeral}, "mount_point"},
		{"9p without tag", &pb.Storage{Driver: Driver9p, MountPoint: dir + "/a"}, "source"},
		{"9p wrong fstype", &pb.Storage{Driver: Driver9p, Source: "t", Fstype: "ext4", MountPoint: dir + "/a"}, "fstype"},
		{"virtio-fs without tag", &pb.Storage{Driver: DriverVirtioFS, MountPoint: dir + "/a"}, "source"},
		{"blk without fstype", &pb.Storage{Driver: DriverBlk, Source: "/dev/vda", MountPoint: dir + "/a"}, "fstype"},
		{"blk bad fstype", &pb.Storage{Driver: DriverBlk, Source: "/dev/vda", Fstype: "ext4,ro", MountPoint: dir + "/a"}, "fstype"},
		{"blk without source", &pb.Storage{Driver: DriverBlk, Fstype: "ext4", MountPoint: dir + "/a"}, "source"},
		{"blk bad PCI path", &pb.Storage{Driver: DriverBlk, Source: "zz/00", Fstype: "ext4", MountPoint: dir + "/a"}, "source"},
		{"blk unclean device", &pb.Storage{Driver: DriverBlk, Source: "/dev/../dev/vda", Fstype: "ext4", MountPoint: dir + "/a"}, "source"},
		{"local bad mode", &pb.Storage{Driver: DriverLocal, Options: []string{"mode=0999"}, MountPoint: dir + "/a"}, "options"},
		{"local big mode", &pb.Storage{Driver: DriverLocal, Options: []string{"mode=17777"}, MountPoint: dir + "/a"}, "options"},
		{"local other option", &pb.Storage{Driver: DriverLocal, Options: []string{"size=1m"}, MountPoint: dir + "/a"}, "options"},
		{"ephemeral bad fsgid", &pb.Storage{Driver: DriverEphemeral, Options: []string{"fsgid=x"}, MountPoint: dir + "/a"}, "options"},
		{"ephemeral wrong fstype", &pb.Storage{Driver: DriverEphemeral, Fstype: "ext4", MountPoint: dir + "/a"}, "fstype"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Mount(ctx, tc.s)
			wantErr(t, err, errdefs.ErrInvalidArgument, tc.field)
		})
	}
	if _, err := os.Stat(dir + "/a"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused storage left its mount point behind")
	}
}

func TestUnknownDriverListsKnown(t *testing.T) {
	_, err := Mount(context.Background(), &pb.Storage{Driver: "nfs", MountPoint: filepath.Join(t.TempDir(), "x")})
	for _, d := range Drivers() {
		if !strings.Contains(err.Error(), d) {
			t.Errorf("error %q does not list driver %s", err, d)
		}
	}
	if got := strings.Join(Drivers(), ","); got != "9p,blk,ephemeral,local,virtio-fs" {
		t.Fatalf("Drivers() = %s", got)
	}
}

func TestMount9pAndVirtioFS(t *testing.T) {
	f := useFakeMounts(t)
	dir := t.TempDir()
	ctx := context.Background()
	mp, err := Mount(ctx, &pb.Storage{Driver: Driver9p, Source: "vcshared", MountPoint: dir + "/shared",
		Options: []string{"nodev", "cache=mmap", "msize=8192", "rprivate"}})
	if err != nil {
		t.Fatal(err)
	}
	if mp != dir+"/shared" {
		t.Fatalf("mount point = %s", mp)
	}
	if _, err := Mount(ctx, &pb.Storage{Driver: DriverVirtioFS, Source: "fs0", Fstype: "virtiofs", MountPoint: dir + "/vfs", Options: []string{"ro"}}); err != nil {
		t.Fatal(err)
	}
	want := []mountCall{
		{"vcshared", dir + "/shared", "9p", unix.MS_NODEV, "trans=virtio,version=9p2000.L,msize=8192,cache=mmap"},
		{"", dir + "/shared", "", unix.MS_PRIVATE | unix.MS_REC, ""},
		{"fs0", dir + "/vfs", "virtiofs", unix.MS_RDONLY, ""},
	}
	if len(f.mounts) != len(want) {
		t.Fatalf("mounts = %+v, want %+v", f.mounts, want)
	}
	for i := range want {
		if f.mounts[i] != want[i] {
			t.Errorf("mount %d = %+v, want %+v", i, f.mounts[i], want[i])
		}
	}
	if st, err := os.Stat(dir + "/shared"); err != nil || !st.IsDir() {
		t.Fatalf("mount point not created: %v", err)
	}
}

func TestRefcount(t *testing.T) {
	f := useFakeMounts(t)
	dir := t.TempDir()
	ctx := context.Background()
	s := &pb.Storage{Driver: Driver9p, Source: "tag", MountPoint: dir + "/m"}
	for range 2 {
		if _, err := Mount(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.mounts) != 1 {
		t.Fatalf("mounted %d times, want once", len(f.mounts))
	}
	// Another source at the same place is refused.
	_, err := Mount(ctx, &pb.Storage{Driver: Driver9p, Source: "other", MountPoint: dir + "/m"})
	wantErr(t, err, errdefs.ErrAlreadyExists, "mount_point")

	if err := Unmount(dir + "/m"); err != nil {
		t.Fatal(err)
	}
	if len(f.unmounts) != 0 {
		t.Fatal("unmounted while a user remains")
	}
	if err := Unmount(dir + "/m"); err != nil {
		t.Fatal(err)
	}
	if len(f.unmounts) != 1 || f.unmounts[0] != dir+"/m" {
		t.Fatalf("unmounts = %v", f.unmounts)
	}
	if _, err := os.Stat(dir + "/m"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("mount point made by Mount was not removed")
	}
	wantErr(t, Unmount(dir+"/m"), errdefs.ErrNotFound, "mount_point")
	wantErr(t, Unmount("rel"), errdefs.ErrInvalidArgument, "mount_point")
}

func TestMountFailureCleansUp(t *testing.T) {
	f := useFakeMounts(t)
	f.mountErr = unix.ENODEV
	dir := t.TempDir()
	_, err := Mount(context.Background(), &pb.Storage{Driver: DriverVirtioFS, Source: "x", MountPoint: dir + "/a/b"})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "virtiofs")
	if !errors.Is(err, unix.ENODEV) {
		t.Fatalf("err = %v does not wrap the errno", err)
	}
	if _, err := os.Stat(dir + "/a/b"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("failed mount left its mount point")
	}
	mu.Lock()
	n := len(table)
	mu.Unlock()
	if n != 0 {
		t.Fatal("failed mount was recorded")
	}
}

func TestMountPointNotDir(t *testing.T) {
	useFakeMounts(t)
	dir := t.TempDir()
	os.WriteFile(dir+"/file", nil, 0o644)
	os.Symlink(dir, dir+"/link")
	for _, mp := range []string{dir + "/file", dir + "/link"} {
		_, err := Mount(context.Background(), &pb.Storage{Driver: DriverEphemeral, MountPoint: mp})
		wantErr(t, err, errdefs.ErrFailedPrecondition, "mount_point")
	}
}

func TestBlkMissingDevice(t *testing.T) {
	useFakeMounts(t)
	old := deviceTimeout
	deviceTimeout = 100 * 1e6
	defer func() { deviceTimeout = old }()
	dir := t.TempDir()
	_, err := Mount(context.Background(), &pb.Storage{Driver: DriverBlk, Source: dir + "/nodev", Fstype: "ext4", MountPoint: dir + "/m"})
	wantErr(t, err, errdefs.ErrNotFound, "source")
	_, err = Mount(context.Background(), &pb.Storage{Driver: DriverBlk, Source: "1e/00", Fstype: "ext4", MountPoint: dir + "/m"})
	wantErr(t, err, errdefs.ErrNotFound, "source")
	os.WriteFile(dir+"/regular", nil, 0o644)
	_, err = Mount(context.Background(), &pb.Storage{Driver: DriverBlk, Source: dir + "/regular", Fstype: "ext4", MountPoint: dir + "/m"})
	wantErr(t, err, errdefs.ErrFailedPrecondition, "source")
}

func TestUpdateEphemeralValidation(t *testing.T) {
	f := useFakeMounts(t)
	dir := t.TempDir()
	ctx := context.Background()
	// The bad one is last: nothing may be applied.
	err := UpdateEphemeral(ctx, []*pb.Storage{
		{Driver: DriverEphemeral, MountPoint: dir + "/e"},
		{Driver: Driver9p, Source: "x", MountPoint: dir + "/n"},
	})
	wantErr(t, err, errdefs.ErrInvalidArgument, "driver")
	if !strings.Contains(err.Error(), "storages[1]") {
		t.Fatalf("err %v does not say which storage", err)
	}
	err = UpdateEphemeral(ctx, []*pb.Storage{{Driver: "bogus", MountPoint: dir + "/e"}})
	wantErr(t, err, errdefs.ErrInvalidArgument, "driver")
	err = UpdateEphemeral(ctx, []*pb.Storage{nil})
	wantErr(t, err, errdefs.ErrInvalidArgument, "storages[0]")
	if len(f.mounts) != 0 {
		t.Fatalf("refused update mounted %v", f.mounts)
	}
}

func TestStaleVirtiofs(t *testing.T) {
	infos, err := mountinfo.Parse(strings.NewReader(`1 0 0:1 / / rw - ext4 /dev/vda rw
2 1 0:2 / /run/sb/a rw - virtiofs t rw
3 1 0:2 / /run/sb/a/deep rw - virtiofs t rw
4 1 0:2 / /run/sb/b rw - virtiofs t rw
5 1 0:2 /x /run/sb/b/sub rw - virtiofs t rw
6 1 0:2 / /elsewhere rw - virtiofs t rw
7 1 0:3 / /run/sb/c rw - 9p t rw
8 1 0:2 / /run/sb rw - virtiofs t rw
`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(staleVirtiofs(infos, "/run/sb", []string{"/run/sb/b"}), " ")
	if want := "/run/sb/a/deep /run/sb/a /run/sb"; got != want {
		t.Fatalf("stale = %q, want %q", got, want)
	}
	got = strings.Join(staleVirtiofs(infos, "", []string{"/run/sb"}), " ")
	if want := "/elsewhere"; got != want {
		t.Fatalf("stale = %q, want %q", got, want)
	}
}

func TestRemoveStaleVirtiofs(t *testing.T) {
	f := useFakeMounts(t)
	dir := t.TempDir()
	mi := filepath.Join(dir, "mountinfo")
	os.WriteFile(mi, []byte("2 1 0:2 / "+dir+"/used rw - virtiofs t rw\n3 1 0:2 / "+dir+"/stale rw - virtiofs t rw\n"), 0o644)
	old := mountinfoPath
	mountinfoPath = mi
	defer func() { mountinfoPath = old }()
	if _, err := Mount(context.Background(), &pb.Storage{Driver: DriverVirtioFS, Source: "t", MountPoint: dir + "/used"}); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveStaleVirtiofs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, " ") != dir+"/stale" || strings.Join(f.unmounts, " ") != dir+"/stale" {
		t.Fatalf("removed %v, unmounted %v", removed, f.unmounts)
	}
}

// Storages mount below the mount root only, and a symbolic link cannot
// lead them out of it.
func TestMountPointConfined(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	old := mountRoot
	mountRoot = dir
	defer func() { mountRoot = old }()
	for _, mp := range []string{"/etc", "/proc/x", dir, dir + "-sibling/x", filepath.Join(dir, "link"), filepath.Join(dir, "link", "deeper", "x")} {
		_, err := Mount(context.Background(), &pb.Storage{Driver: DriverEphemeral, MountPoint: mp})
		if !errdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), "mount_point:") {
			t.Errorf("mount point %s: %v, want an invalid mount_point", mp, err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("the directory behind the link got %v", ents)
	}
	if _, err := checkMountPoint(filepath.Join(dir, "new", "x")); err != nil {
		t.Errorf("a new directory below the root: %v", err)
	}
}
