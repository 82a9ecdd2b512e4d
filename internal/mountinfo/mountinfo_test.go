package mountinfo

import (
	"strings"
	"testing"
)

const sample = `22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,mode=755
36 35 98:0 /mnt1 /mnt\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:50 / /run/vc/sandbox/shared rw - virtiofs myfs rw
41 22 0:50 /sub /run/other rw - virtiofs myfs rw
`

func TestParse(t *testing.T) {
	infos, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 4 {
		t.Fatalf("got %d mounts, want 4", len(infos))
	}
	m := infos[1]
	if m.ID != 36 || m.Parent != 35 || m.Major != 98 || m.Minor != 0 || m.Root != "/mnt1" ||
		m.MountPoint != "/mnt two" || m.FSType != "ext3" || m.Source != "/dev/root" ||
		m.Options != "rw,noatime" || m.SuperOpts != "rw,errors=continue" {
		t.Fatalf("bad parse: %+v", m)
	}
	if got, ok := Lookup(infos, "/run/other"); !ok || got.Root != "/sub" {
		t.Fatalf("Lookup = %+v, %v", got, ok)
	}
	if _, ok := Lookup(infos, "/nope"); ok {
		t.Fatal("Lookup found a mount that is not there")
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{"1 2 3", "x 1 0:1 / / rw - t s o", "1 1 01 / / rw - t s o"} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`a\040b`:    "a b",
		`a\134b`:    `a\b`,
		`a\011\012`: "a\t\n",
		`trail\04`:  `trail\04`,
		`\999`:      `\999`,
		`plain`:     "plain",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadSelf(t *testing.T) {
	infos, err := Read(Self)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := Lookup(infos, "/"); !ok {
		t.Fatal("no / in own mount table")
	}
}
