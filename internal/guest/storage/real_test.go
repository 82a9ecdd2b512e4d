package storage

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	pb "github.com/virtcontainers/vc/api/agent"
	"github.com/virtcontainers/vc/internal/mountinfo"
	"github.com/virtcontainers/vc/internal/testenv"
)

func cleanTable(t *testing.T) {
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for mp, e := range table {
			if e.mounted {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
			delete(table, mp)
		}
	})
}

func mounted(t *testing.T, mp string) (mountinfo.Info, bool) {
	t.Helper()
	infos, err := mountinfo.Read(mountinfo.Self)
	if err != nil {
		t.Fatal(err)
	}
	return mountinfo.Lookup(infos, mp)
}

func TestRealEphemeral(t *testing.T) {
	requireMountNS(t)
	cleanTable(t)
	ctx := context.Background()
	mp := filepath.Join(t.TempDir(), "eph")
	s := &pb.Storage{Driver: DriverEphemeral, MountPoint: mp, Options: []string{"size=1m", "nosuid", "fsgid=4321"}}
	if _, err := Mount(ctx, s); err != nil {
		t.Fatal(err)
	}
	m, ok := mounted(t, mp)
	if !ok || m.FSType != "tmpfs" || !strings.Contains(m.Options, "nosuid") {
		t.Fatalf("mount = %+v, %v", m, ok)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mp, &sfs); err != nil {
		t.Fatal(err)
	}
	if size := sfs.Blocks * uint64(sfs.Bsize); size != 1<<20 {
		t.Fatalf("tmpfs size = %d, want 1 MiB", size)
	}
	var st unix.Stat_t
	unix.Stat(mp, &st)
	if st.Gid != 4321 || st.Mode&unix.S_ISGID == 0 {
		t.Fatalf("fsgid not applied: gid %d mode %o", st.Gid, st.Mode)
	}

	// UpdateEphemeral grows it in place.
	s2 := &pb.Storage{Driver: DriverEphemeral, MountPoint: mp, Options: []string{"size=2m"}}
	os.WriteFile(filepath.Join(mp, "keep"), []byte("x"), 0o644)
	if err := UpdateEphemeral(ctx, []*pb.Storage{s2}); err != nil {
		t.Fatal(err)
	}
	unix.Statfs(mp, &sfs)
	if size := sfs.Blocks * uint64(sfs.Bsize); size != 2<<20 {
		t.Fatalf("tmpfs size after update = %d, want 2 MiB", size)
	}
	if _, err := os.Stat(filepath.Join(mp, "keep")); err != nil {
		t.Fatal("remount lost the files: ", err)
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if _, ok := mounted(t, mp); ok {
		t.Fatal("still mounted after Unmount")
	}
}

func TestRealUpdateMountsNew(t *testing.T) {
	requireMountNS(t)
	cleanTable(t)
	dir := t.TempDir()
	err := UpdateEphemeral(context.Background(), []*pb.Storage{
		{Driver: DriverEphemeral, MountPoint: dir + "/e"},
		{Driver: DriverLocal, MountPoint: dir + "/l", Options: []string{"mode=0750"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mounted(t, dir+"/e"); !ok || m.FSType != "tmpfs" {
		t.Fatalf("ephemeral not mounted: %+v", m)
	}
	st, err := os.Stat(dir + "/l")
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("local dir: %v %v", st, err)
	}
	// A second update changes the local mode, takes no reference.
	if err := UpdateEphemeral(context.Background(), []*pb.Storage{{Driver: DriverLocal, MountPoint: dir + "/l", Options: []string{"mode=1777"}}}); err != nil {
		t.Fatal(err)
	}
	st, _ = os.Stat(dir + "/l")
	if st.Mode().Perm() != 0o777 || st.Mode()&os.ModeSticky == 0 {
		t.Fatalf("local mode after update = %v", st.Mode())
	}
	for _, mp := range []string{dir + "/e", dir + "/l"} {
		if err := Unmount(mp); err != nil {
			t.Fatal(err)
		}
		if err := Unmount(mp); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("second Unmount(%s) = %v: update took a second reference", mp, err)
		}
	}
}

func TestRealLocal(t *testing.T) {
	requireMountNS(t)
	cleanTable(t)
	mp := filepath.Join(t.TempDir(), "a", "local")
	s := &pb.Storage{Driver: DriverLocal, MountPoint: mp, Options: []string{"mode=0777"},
		FsGroup: &pb.FSGroup{GroupId: 2345, GroupChangePolicy: pb.FSGroupChangePolicy_OnRootMismatch}}
	for range 2 {
		if _, err := Mount(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o777 != 0o777 || st.Gid != 2345 || st.Mode&unix.S_ISGID == 0 {
		t.Fatalf("local dir mode %o gid %d", st.Mode, st.Gid)
	}
	if _, ok := mounted(t, mp); ok {
		t.Fatal("local storage was mounted")
	}
	Unmount(mp)
	if _, err := os.Stat(mp); err != nil {
		t.Fatal("local storage removed while still in use")
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mp); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("empty local storage left behind")
	}
}

func TestRealFSGroup(t *testing.T) {
	requireMountNS(t)
	cleanTable(t)
	mp := filepath.Join(t.TempDir(), "vol")
	// Fill a tmpfs, then give it to a group with Always.
	if err := unix.Mount("tmpfs", mustMkdir(t, mp), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mp, unix.MNT_DETACH)
	os.MkdirAll(mp+"/d/e", 0o700)
	os.WriteFile(mp+"/d/f", nil, 0o600)
	os.Symlink("/etc/passwd", mp+"/d/link")
	inner := mustMkdir(t, mp+"/d/inner")
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(inner, unix.MNT_DETACH)
	if err := applyFSGroup(mp, &pb.FSGroup{GroupId: 777}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]uint32{
		mp + "/d":   unix.S_IFDIR | unix.S_ISGID | 0o770,
		mp + "/d/e": unix.S_IFDIR | unix.S_ISGID | 0o770,
		mp + "/d/f": unix.S_IFREG | 0o660,
	} {
		var st unix.Stat_t
		unix.Lstat(path, &st)
		if st.Gid != 777 || st.Mode != want {
			t.Errorf("%s: gid %d mode %o, want 777 %o", path, st.Gid, st.Mode, want)
		}
	}
	var st unix.Stat_t
	unix.Lstat(mp+"/d/link", &st)
	if st.Gid != 777 {
		t.Errorf("symlink gid %d", st.Gid)
	}
	unix.Stat("/etc/passwd", &st)
	if st.Gid == 777 {
		t.Fatal("fs_group followed a symlink out of the volume")
	}
	unix.Stat(inner, &st)
	if st.Gid == 777 {
		t.Fatal("fs_group crossed into a nested mount")
	}
	// OnRootMismatch leaves a matching root alone.
	os.WriteFile(mp+"/later", nil, 0o600)
	os.Chown(mp+"/later", 0, 0) // it inherited the group through set-group-ID
	if err := applyFSGroup(mp, &pb.FSGroup{GroupId: 777, GroupChangePolicy: pb.FSGroupChangePolicy_OnRootMismatch}); err != nil {
		t.Fatal(err)
	}
	unix.Stat(mp+"/later", &st)
	if st.Gid == 777 {
		t.Fatal("OnRootMismatch walked a volume whose root matched")
	}
}

func mustMkdir(t *testing.T, p string) string {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// loopDevice makes an ext4 image and attaches it to a loop device.
func loopDevice(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "losetup"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Skipf(t, "needs %s (e2fsprogs, mount) for a block device", tool)
		}
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		testenv.Skipf(t, "cannot attach a loop device: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func TestRealBlk(t *testing.T) {
	requireMountNS(t)
	cleanTable(t)
	dev := loopDevice(t)
	dir := t.TempDir()
	// The device path appears a little after the request, as a
	// hotplugged disk's node would.
	link := filepath.Join(dir, "disk")
	go func() {
		time.Sleep(150 * time.Millisecond)
		os.Symlink(dev, link)
	}()
	mp := filepath.Join(dir, "mnt")
	s := &pb.Storage{Driver: DriverBlk, Source: link, Fstype: "ext4", MountPoint: mp,
		Options: []string{"nodev", "noatime"}, FsGroup: &pb.FSGroup{GroupId: 99}}
	if _, err := Mount(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	m, ok := mounted(t, mp)
	if !ok || m.FSType != "ext4" || !strings.Contains(m.Options, "noatime") || !strings.Contains(m.Options, "nodev") {
		t.Fatalf("mount = %+v %v", m, ok)
	}
	var st unix.Stat_t
	unix.Stat(mp+"/lost+found", &st)
	if st.Gid != 99 || st.Mode&unix.S_ISGID == 0 {
		t.Fatalf("fs_group on ext4: gid %d mode %o", st.Gid, st.Mode)
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
	if _, ok := mounted(t, mp); ok {
		t.Fatal("still mounted")
	}

	// Read-only: the filesystem refuses writes.
	s.Options = []string{"ro"}
	if _, err := Mount(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp+"/x", nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write on ro storage: %v", err)
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
}

func TestRealBindReadOnly(t *testing.T) {
	requireMountNS(t)
	cleanTable(t)
	src := t.TempDir()
	mp := filepath.Join(t.TempDir(), "ro")
	// An ephemeral storage with "bind,ro" binds its source read-only:
	// the flags are applied by a second, remounting call.
	s := &pb.Storage{Driver: DriverEphemeral, Source: src, MountPoint: mp, Options: []string{"bind", "ro", "rprivate"}}
	if _, err := Mount(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	m, _ := mounted(t, mp)
	if !strings.HasPrefix(m.Options, "ro") {
		t.Fatalf("bind mount options %q, want ro", m.Options)
	}
	if err := os.WriteFile(mp+"/x", nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write on ro bind: %v", err)
	}
	if err := Unmount(mp); err != nil {
		t.Fatal(err)
	}
}
