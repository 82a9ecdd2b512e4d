package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/virtcontainers/vc/pkg/imagestore"
	"github.com/virtcontainers/vc/pkg/volume"
)

func TestParseVolumeFlag(t *testing.T) {
	for in, want := range map[string]mountOpt{
		"/h:/c":                 {Type: mountBind, Source: "/h", Target: "/c", MakeSource: true},
		"/h/:/c:ro":             {Type: mountBind, Source: "/h", Target: "/c", MakeSource: true, ReadOnly: true},
		"/h:/c:rw,rshared":      {Type: mountBind, Source: "/h", Target: "/c", MakeSource: true, Propagation: "rshared"},
		"data:/c":               {Type: mountVolume, Source: "data", Target: "/c"},
		"my.vol_1:/c:ro,nocopy": {Type: mountVolume, Source: "my.vol_1", Target: "/c", ReadOnly: true, NoCopy: true},
	} {
		got, err := parseVolumeFlag(in)
		if err != nil || !equalMount(got, want) {
			t.Errorf("parseVolumeFlag(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	// One field: an anonymous volume, a fresh 64-hex name each time.
	a, err := parseVolumeFlag("/c")
	b, _ := parseVolumeFlag("/c")
	if err != nil || a.Type != mountVolume || !a.Anonymous || a.Target != "/c" || len(a.Source) != 64 || a.Source == b.Source {
		t.Errorf("anonymous: %+v %+v %v", a, b, err)
	}
	for bad, field := range map[string]string{
		"c":             "target",
		"/h:c":          "target",
		"/h:/":          "target",
		":/c":           "source",
		"./h:/c":        "source",
		"a:/c":          "volume name", // one character
		"bad name:/c":   "volume name",
		"/h:/c:rx":      "mode",
		"/h:/c:nocopy":  "mode", // a host path takes no nocopy
		"v1:/c:rshared": "mode",
		"/h:/c:ro:x":    "want",
	} {
		_, err := parseVolumeFlag(bad)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), field) {
			t.Errorf("parseVolumeFlag(%q): %v; want an invalid argument naming %s", bad, err, field)
		}
	}
}

func equalMount(a, b mountOpt) bool {
	return a.Type == b.Type && a.Source == b.Source && a.Target == b.Target && a.ReadOnly == b.ReadOnly &&
		a.Propagation == b.Propagation && a.Anonymous == b.Anonymous && a.NoCopy == b.NoCopy && a.MakeSource == b.MakeSource &&
		slices.Equal(a.TmpfsOptions, b.TmpfsOptions)
}

func TestParseMountFlag(t *testing.T) {
	host := t.TempDir()
	for in, want := range map[string]mountOpt{
		"type=bind,source=" + host + ",target=/c":                             {Type: mountBind, Source: host, Target: "/c"},
		"type=bind,src=" + host + "/,dst=/c,readonly,bind-propagation=rslave": {Type: mountBind, Source: host, Target: "/c", ReadOnly: true, Propagation: "rslave"},
		"type=bind,source=" + host + ",destination=/c,ro=false":               {Type: mountBind, Source: host, Target: "/c"},
		"type=volume,source=data,target=/c,readonly=true":                     {Type: mountVolume, Source: "data", Target: "/c", ReadOnly: true},
		"source=data,target=/c,volume-nocopy":                                 {Type: mountVolume, Source: "data", Target: "/c", NoCopy: true}, // volume is the default type
		"type=tmpfs,target=/c":                                                {Type: mountTmpfs, Target: "/c"},
		"type=tmpfs,target=/c,tmpfs-size=64m,tmpfs-mode=1770":                 {Type: mountTmpfs, Target: "/c", TmpfsOptions: []string{"size=67108864", "mode=1770"}},
		"type=tmpfs,dst=/c,tmpfs-size=1024":                                   {Type: mountTmpfs, Target: "/c", TmpfsOptions: []string{"size=1024"}},
	} {
		got, err := parseMountFlag(in)
		if err != nil || !equalMount(got, want) {
			t.Errorf("parseMountFlag(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	anon, err := parseMountFlag("type=volume,target=/c")
	if err != nil || !anon.Anonymous || len(anon.Source) != 64 {
		t.Errorf("anonymous: %+v %v", anon, err)
	}
	missing := filepath.Join(host, "missing")
	_, err = parseMountFlag("type=bind,source=" + missing + ",target=/c")
	if want := `invalid mount config for type "bind": bind source path does not exist: ` + missing; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("missing bind source: %v; want %q", err, want)
	}
	for bad, field := range map[string]string{
		"type=bind,source=" + host + ",target=/c,color=red":     `unknown key "color"`,
		"type=bind,source=" + host + ",target=/c,tmpfs-size=1m": "tmpfs-size",
		"type=bind,target=/c":                                            "source must not be empty",
		"type=bind,source=rel,target=/c":                                 "absolute",
		"type=volume,source=" + host + ",target=/c":                      "volume name",
		"type=volume,source=v1,target=/c,bind-propagation=shared":        "bind-propagation",
		"type=volume,source=v1":                                          "target must not be empty",
		"type=volume,source=v1,target=c":                                 "target",
		"type=tmpfs,source=x,target=/c":                                  "source must not be specified",
		"type=tmpfs,target=/c,tmpfs-size=lots":                           "tmpfs-size",
		"type=tmpfs,target=/c,tmpfs-mode=999":                            "tmpfs-mode",
		"type=tmpfs,target=/c,readonly=maybe":                            "readonly",
		"type=nfs,target=/c":                                             "type",
		"type=bind,source=" + host + ",target=/c,bind-propagation=weird": "bind-propagation",
	} {
		_, err := parseMountFlag(bad)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), field) {
			t.Errorf("parseMountFlag(%q): %v; want an invalid argument naming %s", bad, err, field)
		}
	}
}

func TestParseTmpfsFlag(t *testing.T) {
	m, err := parseTmpfsFlag("/scratch")
	if err != nil || m.Type != mountTmpfs || m.Target != "/scratch" || len(m.TmpfsOptions) != 0 {
		t.Fatalf("plain: %+v %v", m, err)
	}
	m, err = parseTmpfsFlag("/scratch:size=64m,mode=1777,exec")
	if err != nil || !slices.Equal(m.TmpfsOptions, []string{"size=64m", "mode=1777", "exec"}) {
		t.Fatalf("options: %+v %v", m, err)
	}
	for _, bad := range []string{"scratch", "/", "/s:color=red", "/s:bogus", "/s:size"} {
		if _, err := parseTmpfsFlag(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseTmpfsFlag(%q): %v; want refused", bad, err)
		}
	}
	// docker's defaults, the user's options overriding them.
	for _, c := range []struct {
		user []string
		ro   bool
		want string
	}{
		{nil, false, "noexec,nosuid,nodev"},
		{[]string{"size=64m", "mode=1777"}, false, "noexec,nosuid,nodev,size=64m,mode=1777"},
		{[]string{"exec", "size=1m", "size=2m"}, true, "nosuid,nodev,ro,exec,size=2m"},
		{[]string{"rw"}, true, "noexec,nosuid,nodev,rw"},
	} {
		if got := strings.Join(tmpfsOptions(c.user, c.ro), ","); got != c.want {
			t.Errorf("tmpfsOptions(%q, %v) = %s; want %s", c.user, c.ro, got, c.want)
		}
	}
}

func TestMountOptions(t *testing.T) {
	host := t.TempDir()
	ms, err := mountOptions([]string{"data:/d", "/e"}, []string{"type=bind,source=" + host + ",target=/h"}, []string{"/t:size=1m"})
	if err != nil || len(ms) != 4 || ms[0].Source != "data" || !ms[1].Anonymous || ms[2].Source != host || ms[3].Type != mountTmpfs {
		t.Fatalf("mountOptions: %+v %v", ms, err)
	}
	if got := anonymousVolumes(runOptions{Mounts: ms}); len(got) != 1 || got[0] != ms[1].Source {
		t.Errorf("anonymousVolumes: %q", got)
	}
	_, err = mountOptions([]string{"/x:/d"}, nil, []string{"/d/"})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "--tmpfs #1") || !strings.Contains(err.Error(), "duplicate mount point /d") {
		t.Errorf("duplicate target: %v", err)
	}
	_, err = mountOptions(nil, []string{"type=volume,target=/a", "type=volume,target=/b,foo=1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--mount #2") || !strings.Contains(err.Error(), `"foo"`) {
		t.Errorf("unknown key: %v", err)
	}
}

// specMount makes a volume in the store, bound read-only when asked; a
// tmpfs gets docker's defaults.
func TestSpecMount(t *testing.T) {
	st, err := volume.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sm, err := mountOpt{Type: mountVolume, Source: "data", Target: "/d", ReadOnly: true}.specMount(st)
	if err != nil || sm.Type != "bind" || sm.Source != st.Mountpoint("data") || sm.Destination != "/d" || !slices.Equal(sm.Options, []string{"rbind", "rprivate", "ro"}) {
		t.Fatalf("volume: %+v %v", sm, err)
	}
	if v, err := st.Get("data"); err != nil || v.Anonymous() {
		t.Errorf("the volume made: %+v %v", v, err)
	}
	if _, err := (mountOpt{Type: mountVolume, Source: "anon1", Target: "/d", Anonymous: true}).specMount(st); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get("anon1"); err != nil || !v.Anonymous() {
		t.Errorf("the anonymous volume made: %+v %v", v, err)
	}
	sm, err = mountOpt{Type: mountTmpfs, Target: "/t", TmpfsOptions: []string{"size=1m"}}.specMount(st)
	if err != nil || sm.Type != "tmpfs" || sm.Source != "tmpfs" || !slices.Equal(sm.Options, []string{"noexec", "nosuid", "nodev", "size=1m"}) {
		t.Errorf("tmpfs: %+v %v", sm, err)
	}
	// --mount's bind source gone between the flags and the run.
	if _, err := (mountOpt{Type: mountBind, Source: filepath.Join(t.TempDir(), "gone"), Target: "/b"}).specMount(st); err == nil {
		t.Error("a missing --mount bind source accepted")
	}
}

// The image's VOLUMEs become anonymous volumes unless a mount covers
// them; a directory (--rootfs) has none.
func TestImageVolumes(t *testing.T) {
	img := &imagestore.Image{Config: &v1.ConfigFile{Config: v1.Config{Volumes: map[string]struct{}{
		"/var/lib/db": {}, "/data/": {}, "relative": {}, "/cache": {},
	}}}}
	got := imageVolumes(imageSource{image: img}, []mountOpt{{Type: mountTmpfs, Target: "/cache"}})
	if len(got) != 2 || got[0].Target != "/data" || got[1].Target != "/var/lib/db" {
		t.Fatalf("image volumes: %+v; want /data and /var/lib/db", got)
	}
	for _, m := range got {
		if m.Type != mountVolume || !m.Anonymous || len(m.Source) != 64 {
			t.Errorf("image volume %+v: want an anonymous volume", m)
		}
	}
	// Run again: the record has them.
	if again := imageVolumes(imageSource{image: img}, append(got, mountOpt{Type: mountTmpfs, Target: "/cache"})); len(again) != 0 {
		t.Errorf("run again made more: %+v", again)
	}
	if none := imageVolumes(imageSource{lowers: []string{"/r"}}, nil); len(none) != 0 {
		t.Errorf("a directory's volumes: %+v", none)
	}
}
