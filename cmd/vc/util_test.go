package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

// A detached owner's readiness line becomes the error `vc run -d` ends
// with: the reason, and docker's exit code for a container that could not
// start.
func TestReadyError(t *testing.T) {
	var ee exitError
	err := readyError(`error 127: container x: exec: "/nope": stat /nope: no such file or directory`, "")
	if !errors.As(err, &ee) || ee.code != 127 || !strings.Contains(err.Error(), `exec: "/nope"`) {
		t.Errorf("start error: %v (%+v)", err, ee)
	}
	err = readyError("error: sandbox x: boot: no kernel", "")
	if errors.As(err, &ee) || err.Error() != "sandbox x: boot: no kernel" {
		t.Errorf("plain error: %v", err)
	}
	log := filepath.Join(t.TempDir(), "owner.log")
	os.WriteFile(log, []byte("panic: boom\n"), 0o600)
	if err := readyError("", log); err == nil || err.Error() != "owner process died: panic: boom" {
		t.Errorf("dead owner: %v", err)
	}
}
