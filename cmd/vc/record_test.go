package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/virtcontainers/vc/pkg/vc"
)

// recordV0Options is what testdata/run-v0.json holds: written by vc's
// saveOptions before the record had a type of its own.
var recordV0Options = runOptions{
	ID: "web", Image: "busybox", Args: []string{"sh", "-c", "echo hi"}, Env: []string{"A=1"},
	Workdir: "/srv", Volumes: []string{"/old:/old:ro"}, CPUs: 2, CPUQuota: 150000, MemoryMiB: 512,
	Rm: true, Interactive: true, TTY: true, Kernel: "/k", Initrd: "/i", Accel: "tcg", Debug: true,
	Network: "net1", IP: "10.89.0.5", Aliases: []string{"www"},
	Publish: []vc.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
	DNS:     []netip.Addr{netip.MustParseAddr("9.9.9.9")},
	User:    "1000:1000", Entrypoint: []string{"/bin/sh"}, Hostname: "h", ReadOnly: true, Privileged: true,
	CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"CHOWN"}, Init: true, Factory: "auto",
	ImageDigest: "sha256:ab12", CID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	Mounts: []mountOpt{
		{Type: "bind", Source: "/host", Target: "/ctr", ReadOnly: true, Propagation: "rshared", MakeSource: true},
		{Type: "volume", Source: "data", Target: "/data", Anonymous: true, NoCopy: true},
		{Type: "tmpfs", Target: "/tmp", TmpfsOptions: []string{"size=64m"}},
	},
}

// recordV0 is the version 0 reader: runOptions as it was when vc wrote
// version 0, frozen here. An older vc reads a record with it.
type recordV0 struct {
	ID          string           `json:"id"`
	Image       string           `json:"image"`
	Rootfs      string           `json:"rootfs"`
	Args        []string         `json:"args"`
	Env         []string         `json:"env"`
	Workdir     string           `json:"workdir"`
	Volumes     []string         `json:"volumes"`
	CPUs        uint             `json:"cpus"`
	CPUQuota    int64            `json:"cpu_quota,omitempty"`
	MemoryMiB   uint32           `json:"memory_mib"`
	Rm          bool             `json:"rm"`
	Detach      bool             `json:"detach"`
	Interactive bool             `json:"interactive"`
	TTY         bool             `json:"tty"`
	Kernel      string           `json:"kernel"`
	Initrd      string           `json:"initrd"`
	Accel       string           `json:"accel"`
	Debug       bool             `json:"debug"`
	NetNS       string           `json:"netns,omitempty"`
	Network     string           `json:"network,omitempty"`
	IP          string           `json:"ip,omitempty"`
	Aliases     []string         `json:"aliases,omitempty"`
	NoNAT       bool             `json:"no_nat,omitempty"`
	Publish     []vc.PortMapping `json:"publish,omitempty"`
	DNS         []netip.Addr     `json:"dns,omitempty"`
	User        string           `json:"user,omitempty"`
	Entrypoint  []string         `json:"entrypoint,omitempty"`
	Hostname    string           `json:"hostname,omitempty"`
	ReadOnly    bool             `json:"read_only,omitempty"`
	Privileged  bool             `json:"privileged,omitempty"`
	CapAdd      []string         `json:"cap_add,omitempty"`
	CapDrop     []string         `json:"cap_drop,omitempty"`
	Init        bool             `json:"init,omitempty"`
	Create      bool             `json:"create,omitempty"`
	Factory     string           `json:"factory,omitempty"`
	ImageDigest string           `json:"image_digest,omitempty"`
	Carry       string           `json:"carry,omitempty"`
	CID         string           `json:"cid,omitempty"`
	Mounts      []mountOpt       `json:"mounts,omitempty"`
}

// A record the previous vc wrote is read whole by this one.
func TestRecordReadsVersion0(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "web")
	os.Mkdir(dir, 0o700)
	b, err := os.ReadFile("testdata/run-v0.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, optionsFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := savedOptions(&globals{stateRoot: root}, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recordV0Options) {
		t.Errorf("read back:\n%+v\nwant\n%+v", got, recordV0Options)
	}
}

// A record this vc writes is version 1, is read back the same, and reads
// with the previous vc's reader as the previous vc's own record did.
func TestRecordWrittenReadsBothWays(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "web")
	os.Mkdir(dir, 0o700)
	o := recordV0Options
	// What one run alone needs is not recorded.
	o.Carry, o.Create, o.Detach = "/x", true, true
	if err := saveOptions(dir, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, optionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Version int `json:"version"`
	}
	if json.Unmarshal(b, &v); v.Version != recordVersion {
		t.Errorf("version %d, want %d", v.Version, recordVersion)
	}
	got, err := savedOptions(&globals{stateRoot: root}, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recordV0Options) {
		t.Errorf("read back:\n%+v\nwant\n%+v", got, recordV0Options)
	}
	// The previous vc's reader.
	var old, oldOwn recordV0
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	v0, _ := os.ReadFile("testdata/run-v0.json")
	if err := json.Unmarshal(v0, &oldOwn); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(old, oldOwn) {
		t.Errorf("an older vc reads:\n%+v\nwhere its own record reads\n%+v", old, oldOwn)
	}
}

// A newer vc's record, with fields this one does not know, still reads.
func TestRecordReadsNewerVersion(t *testing.T) {
	r, err := parseRecord([]byte(`{"version":7,"id":"web","image":"busybox","some_new_field":{"x":1}}`))
	if err != nil || r.ID != "web" || r.Image != "busybox" {
		t.Errorf("newer record: %+v, %v", r, err)
	}
	if _, err := parseRecord([]byte(`{"version":-1}`)); err == nil {
		t.Error("a negative version was read")
	}
}

// Every field of runOptions that a run again needs is in the record: a
// new flag is recorded only if added to containerRecord, and this test
// names the ones left out on purpose.
func TestRecordCoversOptions(t *testing.T) {
	notRecorded := map[string]bool{"Carry": true, "Create": true, "Detach": true}
	rt := reflect.TypeOf(containerRecord{})
	ot := reflect.TypeOf(runOptions{})
	for i := range ot.NumField() {
		name := ot.Field(i).Name
		if _, ok := rt.FieldByName(name); !ok && !notRecorded[name] {
			t.Errorf("runOptions.%s is not in containerRecord (add it, or name it here)", name)
		}
	}
}
