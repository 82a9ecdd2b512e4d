package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The volume tests keep their volumes in a data root of their own (an
// imgEnv's, with the built-in busybox), so that what they count is
// theirs whatever else runs.

// volumeNames is `vc volume ls -q`.
func (e *imgEnv) volumeNames(t *testing.T) []string {
	t.Helper()
	return strings.Fields(e.must(t, "volume", "ls", "-q"))
}

// A named volume keeps what one container wrote for the next `vc run`;
// its first use gives it the image's content at its target, as docker's
// does; --mount type=volume,readonly mounts it read-only.
func TestNamedVolume(t *testing.T) {
	e := newImgEnv(t)
	data, etc := "e2e-vol-data", "e2e-vol-etc"
	out, errOut, code := e.vc(t, "run", "--rm", "--name", "e2e-vol-w", "-v", data+":/data", "-v", etc+":/etc", "busybox", "--",
		"sh", "-c", "echo written by one > /data/f; grep -c vcshared /proc/mounts >/dev/null && echo shared")
	if code != 0 || out != "shared\n" {
		t.Fatalf("first run: exit %d stdout %q stderr %q", code, out, errOut)
	}
	out, errOut, code = e.vc(t, "volume", "inspect", data)
	var vols []struct{ Name, Driver, Mountpoint, CreatedAt string }
	if err := json.Unmarshal([]byte(out), &vols); code != 0 || err != nil || len(vols) != 1 || vols[0].Name != data || vols[0].Driver != "local" || vols[0].CreatedAt == "" {
		t.Fatalf("volume inspect: exit %d %v\n%s%s", code, err, out, errOut)
	}
	if want := filepath.Join(e.data, "volumes", data, "_data"); vols[0].Mountpoint != want {
		t.Errorf("mountpoint %s, want %s", vols[0].Mountpoint, want)
	}
	if b, err := os.ReadFile(filepath.Join(vols[0].Mountpoint, "f")); err != nil || string(b) != "written by one\n" {
		t.Errorf("the volume on the host: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(e.data, "volumes", etc, "_data", "passwd")); err != nil || !strings.HasPrefix(string(b), "root:") {
		t.Errorf("the image's /etc/passwd not copied into the empty volume: %q %v", b, err)
	}
	out, errOut, code = e.vc(t, "run", "--rm", "--name", "e2e-vol-r", "--mount", "type=volume,source="+data+",target=/in,readonly", "busybox", "--",
		"sh", "-c", "cat /in/f; touch /in/g 2>/dev/null && echo WROTE; true")
	if code != 0 || out != "written by one\n" {
		t.Fatalf("second run: exit %d stdout %q stderr %q; want what the first wrote, and no write", code, out, errOut)
	}
	noLeftovers(t, "e2e-vol-r")
}

// vc volume rm refuses a volume a stopped container has, naming the
// container, and removes it once the container is gone; a container run
// again keeps its anonymous volume; vc rm -v removes it with the
// container, and not its named one.
func TestVolumeRmInUse(t *testing.T) {
	e := newImgEnv(t)
	id, name := "e2e-vol-inuse", "e2e-vol-inuse"
	t.Cleanup(func() { e.vc(t, "rm", "-f", "-v", id) })
	before := e.volumeNames(t)
	script := "echo x >> /anon/f; wc -l < /anon/f"
	if out, errOut, code := e.vc(t, "run", "--name", id, "-v", name+":/named", "-v", "/anon", "busybox", "--", "sh", "-c", script); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("run: exit %d stdout %q stderr %q", code, out, errOut)
	}
	// Run again, the container has the same anonymous volume.
	if out, errOut, code := e.vc(t, "start", "-a", id); code != 0 || strings.TrimSpace(out) != "2" {
		t.Fatalf("start -a: exit %d stdout %q stderr %q; want the second line of the anonymous volume's file", code, out, errOut)
	}
	var anon []string
	for _, n := range e.volumeNames(t) {
		if !slices.Contains(before, n) && n != name {
			anon = append(anon, n)
		}
	}
	if len(anon) != 1 || len(anon[0]) != 64 {
		t.Fatalf("anonymous volumes made by the run: %q, want one of 64 hex digits", anon)
	}
	_, errOut, code := e.vc(t, "volume", "rm", name)
	if code == 0 || !strings.Contains(errOut, id) || !strings.Contains(errOut, "in use") {
		t.Fatalf("volume rm of a volume a stopped container has: exit %d stderr %q; want refused naming %s", code, errOut, id)
	}
	if !slices.Contains(e.volumeNames(t), name) {
		t.Fatal("the refused volume rm removed the volume")
	}
	if _, errOut, code = e.vc(t, "rm", "-v", id); code != 0 {
		t.Fatalf("rm -v: exit %d: %s", code, errOut)
	}
	left := e.volumeNames(t)
	if slices.Contains(left, anon[0]) || !slices.Contains(left, name) {
		t.Fatalf("after rm -v: volumes %q; want the anonymous %s gone and %s kept", left, anon[0], name)
	}
	if out, errOut, code := e.vc(t, "volume", "rm", name); code != 0 || out != name+"\n" {
		t.Fatalf("volume rm once the container is gone: exit %d stdout %q stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(e.data, "volumes", name)); !os.IsNotExist(err) {
		t.Errorf("the removed volume's directory: %v", err)
	}
}

// vc run --rm removes the container's anonymous volume with it.
func TestAnonymousVolumeRunRm(t *testing.T) {
	e := newImgEnv(t)
	before := e.volumeNames(t)
	out, errOut, code := e.vc(t, "run", "--rm", "--name", "e2e-vol-anon", "-v", "/anon", "busybox", "--",
		"sh", "-c", "echo x > /anon/f && grep ' /anon ' /proc/mounts | cut -d' ' -f1,3")
	if code != 0 || out != "vcshared 9p\n" {
		t.Fatalf("run: exit %d stdout %q stderr %q; want /anon shared from the host", code, out, errOut)
	}
	noLeftovers(t, "e2e-vol-anon")
	if after := e.volumeNames(t); !slices.Equal(before, after) {
		t.Fatalf("volumes before %q, after %q: the anonymous volume stayed", before, after)
	}
}

// --tmpfs and --mount type=tmpfs are tmpfs in the guest, with the size
// asked and docker's noexec,nosuid,nodev unless overridden.
func TestTmpfsMounts(t *testing.T) {
	out, errOut, code := vcRun(t, nil, "run", "--rm", "--name", "e2e-tmpfs", "--tmpfs", "/scratch:size=16m,exec",
		"--mount", "type=tmpfs,target=/t2,tmpfs-size=4m,tmpfs-mode=1770", "busybox", "--",
		"sh", "-c", "grep -E ' /(scratch|t2) ' /proc/mounts; stat -c %a /t2; echo x > /scratch/f && cat /scratch/f")
	if code != 0 {
		t.Fatalf("run: exit %d stdout %q stderr %q", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("output %q: want two mounts, a mode and x", out)
	}
	mounts := map[string]string{}
	for _, l := range lines[:2] {
		if f := strings.Fields(l); len(f) > 1 {
			mounts[f[1]] = l
		}
	}
	for _, c := range []struct {
		target string
		want   []string
		not    string
	}{
		{"/scratch", []string{"tmpfs /scratch tmpfs", "size=16384k", "nosuid", "nodev"}, "noexec"},
		{"/t2", []string{"tmpfs /t2 tmpfs", "size=4096k", "noexec", "nosuid", "nodev", "mode=1770"}, ""},
	} {
		line, ok := mounts[c.target]
		if !ok {
			t.Errorf("no tmpfs on %s in %q", c.target, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(line, w) {
				t.Errorf("mount %q: no %q", line, w)
			}
		}
		if c.not != "" && strings.Contains(line, c.not) {
			t.Errorf("mount %q: %q although overridden", line, c.not)
		}
	}
	if lines[2] != "1770" || lines[3] != "x" {
		t.Errorf("mode %q, content %q", lines[2], lines[3])
	}
	noLeftovers(t, "e2e-tmpfs")
}

// --mount type=bind refuses a missing source, as docker does, exit 125,
// before anything is made; an unknown key is refused naming it.
func TestMountBindMissing(t *testing.T) {
	e := newImgEnv(t)
	missing := filepath.Join(t.TempDir(), "missing")
	before := e.volumeNames(t)
	out, errOut, code := e.vc(t, "run", "--rm", "--name", "e2e-mount-missing", "-v", "/anon",
		"--mount", "type=bind,source="+missing+",target=/x", "busybox", "--", "true")
	want := `invalid mount config for type "bind": bind source path does not exist: ` + missing
	if code != 125 || out != "" || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d stdout %q stderr %q; want 125 and %q", code, out, errOut, want)
	}
	if _, err := os.Lstat(missing); !os.IsNotExist(err) {
		t.Errorf("the missing source was made: %v", err)
	}
	noLeftovers(t, "e2e-mount-missing")
	if after := e.volumeNames(t); !slices.Equal(before, after) {
		t.Errorf("volumes before %q, after %q", before, after)
	}
	_, errOut, code = e.vc(t, "run", "--rm", "--mount", "type=tmpfs,target=/x,colour=red", "busybox", "--", "true")
	if code != 125 || !strings.Contains(errOut, `unknown key "colour"`) {
		t.Errorf("unknown key: exit %d stderr %q", code, errOut)
	}
}

// An image's VOLUME is an anonymous volume, as docker makes it: given the
// image's content (owner kept) on first use, kept by the container until
// vc rm -v.
func TestImageVolume(t *testing.T) {
	e := newImgEnv(t)
	img := appImage(t, "vol")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	c.Volumes = map[string]struct{}{"/srv/app": {}}
	if img, err = mutate.Config(img, c); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	dockerSave(t, archive, "e2e/imgvol:1", img, nil)
	e.must(t, "load", "-i", archive)
	t.Cleanup(func() { e.vc(t, "rm", "-f", "-v", "e2e-imgvol") })
	out := e.must(t, "run", "--name", "e2e-imgvol", "--entrypoint", "/bin/sh", "e2e/imgvol:1", "-c",
		`grep " /srv/app " /proc/mounts | cut -d" " -f1; cat /srv/app/variant; stat -c %u:%g /srv/app; echo new > /srv/app/f && echo wrote`)
	if want := "vcshared\nvol\n1000:1001\nwrote\n"; out != want {
		t.Fatalf("in the container: %q, want %q (the image's VOLUME a volume with the image's content, owner kept)", out, want)
	}
	vols := strings.Fields(e.must(t, "volume", "ls", "-q"))
	if len(vols) != 1 || len(vols[0]) != 64 {
		t.Fatalf("volumes: %q, want one anonymous", vols)
	}
	if b, err := os.ReadFile(filepath.Join(e.data, "volumes", vols[0], "_data", "f")); err != nil || string(b) != "new\n" {
		t.Errorf("the volume on the host: %q %v", b, err)
	}
	e.must(t, "rm", "-v", "e2e-imgvol")
	if left := e.must(t, "volume", "ls", "-q"); left != "" {
		t.Errorf("after rm -v: %s", left)
	}
}

// vc help lists volume and describes it; vc run --help has the mount
// flags; completion knows the subcommands; a bad name is refused naming
// the field.
func TestVolumeHelp(t *testing.T) {
	if out, _, code := vcRun(t, nil, "help"); code != 0 || !strings.Contains(out, "\n  volume ") {
		t.Errorf("vc help: exit %d, no volume in\n%s", code, out)
	}
	if out, _, code := vcRun(t, nil, "help", "volume"); code != 0 || !strings.Contains(out, "usage: vc volume create") || !strings.Contains(out, "prune") {
		t.Errorf("vc help volume: exit %d\n%s", code, out)
	}
	if out, _, code := vcRun(t, nil, "help", "run"); code != 0 || !strings.Contains(out, "-mount") || !strings.Contains(out, "-tmpfs") {
		t.Errorf("vc help run: exit %d, no --mount or --tmpfs\n%s", code, out)
	}
	if got := complete(t, "vc", "volume", "p"); got != "prune" {
		t.Errorf("completion of vc volume p: %q, want prune", got)
	}
	if _, errOut, code := vcRun(t, nil, "volume", "create", "a/b"); code != 125 || !strings.Contains(errOut, `volume name "a/b"`) {
		t.Errorf("volume create a/b: exit %d stderr %q; want 125 naming the volume name", code, errOut)
	}
}
