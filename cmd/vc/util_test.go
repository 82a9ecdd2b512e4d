package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/spawn"
	"github.com/virtcontainers/vc/pkg/vc"
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

// A detached owner's report becomes the error `vc run -d` ends with: the
// reason, and docker's exit code for a container that could not start;
// an owner that died reports its log.
func TestOwnerError(t *testing.T) {
	var ee exitError
	err := ownerError(spawn.ParseReport(`error 127: container x: exec: "/nope": stat /nope: no such file or directory`))
	if !errors.As(err, &ee) || ee.code != 127 || !strings.Contains(err.Error(), `exec: "/nope"`) {
		t.Errorf("start error: %v (%+v)", err, ee)
	}
	err = ownerError(spawn.ParseReport("error: sandbox x: boot: no kernel"))
	if errors.As(err, &ee) || err.Error() != "sandbox x: boot: no kernel" {
		t.Errorf("plain error: %v", err)
	}
	log := filepath.Join(t.TempDir(), "owner.log")
	os.WriteFile(log, []byte("panic: boom\n"), 0o600)
	if msg := ownerDied(log); msg != "owner process died: panic: boom" {
		t.Errorf("dead owner: %v", msg)
	}
	// The owner's side: a start error carries its code, a bare exit
	// status none.
	if l := spawn.Line(startError(vc.ErrCommandNotFound)); !strings.HasPrefix(l, "error 127: ") {
		t.Errorf("start error reported as %q", l)
	}
	if l := spawn.Line(exitError{code: 3}); l != "error: exit status 3\n" {
		t.Errorf("exit status reported as %q", l)
	}
}

// --cpus takes docker's fractions: the VM rounds up, the container's
// quota is the fraction; more than the host has is refused, naming it.
func TestParseCPUs(t *testing.T) {
	host := runtime.NumCPU()
	for _, tc := range []struct {
		in    string
		vcpus uint32
		quota int64
	}{
		{"", 0, 0},
		{"0", 0, 0},
		{"0.5", 1, 50000},
		{"0.01", 1, 1000},
		{"1", 1, 100000},
	} {
		vcpus, quota, err := parseCPUs(tc.in)
		if err != nil || vcpus != tc.vcpus || quota != tc.quota {
			t.Errorf("parseCPUs(%q) = %d, %d, %v; want %d vCPUs, quota %d", tc.in, vcpus, quota, err, tc.vcpus, tc.quota)
		}
	}
	// Within the host's CPUs only: 1.5 and 2 need two.
	for _, tc := range []struct {
		in    string
		vcpus uint32
		quota int64
	}{{"1.5", 2, 150000}, {"2", 2, 200000}} {
		vcpus, quota, err := parseCPUs(tc.in)
		switch {
		case host >= 2 && (err != nil || vcpus != tc.vcpus || quota != tc.quota):
			t.Errorf("parseCPUs(%q) = %d, %d, %v; want %d vCPUs, quota %d", tc.in, vcpus, quota, err, tc.vcpus, tc.quota)
		case host < 2 && err == nil:
			t.Errorf("parseCPUs(%q) on a %d-CPU host accepted", tc.in, host)
		}
	}
	for in, want := range map[string]string{
		"-1":                      `--cpus "-1": below the least of 0.01 CPUs`,
		"0.001":                   `--cpus "0.001": below the least of 0.01 CPUs`,
		"abc":                     `--cpus "abc": want a number of CPUs`,
		"NaN":                     `--cpus "NaN": want a number of CPUs`,
		"1e30":                    `--cpus "1e30": more than 64 vCPUs`,
		strconv.Itoa(host + 1):    fmt.Sprintf("--cpus %d: more than the host's %d CPUs", host+1, host),
		fmt.Sprintf("%d.5", host): fmt.Sprintf("--cpus %d: more than the host's %d CPUs", host+1, host),
	} {
		if _, _, err := parseCPUs(in); err == nil || !strings.Contains(err.Error(), want) || !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseCPUs(%q): %v; want an invalid argument %q", in, err, want)
		}
	}
	if host < 64 {
		if _, _, err := parseCPUs("64"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("--cpus 64: more than the host's %d CPUs", host)) {
			t.Errorf("parseCPUs(64) on a %d-CPU host: %v", host, err)
		}
	}
}
