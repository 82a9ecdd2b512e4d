package main

import "testing"

func TestParseMiB(t *testing.T) {
	for in, want := range map[string]uint32{"256M": 256, "1G": 1024, "512m": 512, "268435456": 256, "2048k": 2} {
		got, err := parseMiB(in)
		if err != nil || got != want {
			t.Errorf("parseMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "12X", "-1M"} {
		if _, err := parseMiB(bad); err == nil {
			t.Errorf("parseMiB(%q) accepted", bad)
		}
	}
}

func TestParseVolume(t *testing.T) {
	m, err := parseVolume("/tmp/a:/data:ro")
	if err != nil || m.Source != "/tmp/a" || m.Destination != "/data" || m.Options[len(m.Options)-1] != "ro" {
		t.Fatalf("parseVolume: %+v %v", m, err)
	}
	for _, bad := range []string{"/a", "a:/b", "/a:b", "/a:/b:rx", "/a:/b:ro:x"} {
		if _, err := parseVolume(bad); err == nil {
			t.Errorf("parseVolume(%q) accepted", bad)
		}
	}
}
