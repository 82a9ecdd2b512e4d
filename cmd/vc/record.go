package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"github.com/virtcontainers/vc/pkg/vc"
)

// optionsFile keeps, in the sandbox's state directory, the record of a
// container: what it was run with, for vc start and vc restart to run it
// again, and for vc inspect, vc cp, vc rm -v.
const optionsFile = "run.json"

// recordVersion is the version of the container record this vc writes.
//
// Version 0 (no "version" field) is the record vc wrote before the record
// had a type of its own (testdata/run-v0.json): runOptions as JSON.
// Version 1 has the same fields and names, and "version".
//
// The rule that keeps records readable both ways: a field is only ever
// added, never renamed or given another meaning. An older vc ignores
// fields it does not know (encoding/json), a newer one finds an older
// record's missing fields zero, which must mean what the older vc did. A
// change that cannot follow the rule gets a new field name, a new
// version, and its conversion in options.
const recordVersion = 1

// containerRecord is the on-disk record of a container (run.json). It is
// not runOptions: a flag added to vc run changes the record only when it
// is added here.
type containerRecord struct {
	Version int `json:"version"`

	ID          string           `json:"id"`
	CID         string           `json:"cid,omitempty"`
	Image       string           `json:"image"`
	ImageDigest string           `json:"image_digest,omitempty"`
	Rootfs      string           `json:"rootfs"`
	Args        []string         `json:"args"`
	Env         []string         `json:"env"`
	Workdir     string           `json:"workdir"`
	Volumes     []string         `json:"volumes"`
	CPUs        uint32           `json:"cpus"`
	CPUQuota    int64            `json:"cpu_quota,omitempty"`
	MemoryMiB   uint32           `json:"memory_mib"`
	Rm          bool             `json:"rm"`
	Detach      bool             `json:"detach"` // always false: a run again is detached
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
	Devices     []string         `json:"devices,omitempty"`
	Init        bool             `json:"init,omitempty"`
	Factory     string           `json:"factory,omitempty"`
	SharedFS    string           `json:"shared_fs,omitempty"`
	Mounts      []recordMount    `json:"mounts,omitempty"`
	Policy      string           `json:"policy,omitempty"`
}

// recordMount is a mount of the record (mountOpt's fields).
type recordMount struct {
	Type         string   `json:"type"`
	Source       string   `json:"source,omitempty"`
	Target       string   `json:"target"`
	ReadOnly     bool     `json:"readonly,omitempty"`
	Propagation  string   `json:"propagation,omitempty"`
	TmpfsOptions []string `json:"tmpfs_options,omitempty"`
	Anonymous    bool     `json:"anonymous,omitempty"`
	NoCopy       bool     `json:"nocopy,omitempty"`
	MakeSource   bool     `json:"make_source,omitempty"`
}

// recordOf is the record of a container run with o. What only one run
// needs (Carry, Create, Detach) is not kept.
func recordOf(o runOptions) containerRecord {
	r := containerRecord{
		Version: recordVersion,
		ID:      o.ID, CID: o.CID, Image: o.Image, ImageDigest: o.ImageDigest, Rootfs: o.Rootfs,
		Args: o.Args, Env: o.Env, Workdir: o.Workdir, Volumes: o.Volumes,
		CPUs: o.CPUs, CPUQuota: o.CPUQuota, MemoryMiB: o.MemoryMiB,
		Rm: o.Rm, Interactive: o.Interactive, TTY: o.TTY,
		Kernel: o.Kernel, Initrd: o.Initrd, Accel: o.Accel, Debug: o.Debug,
		NetNS: o.NetNS, Network: o.Network, IP: o.IP, Aliases: o.Aliases,
		NoNAT: o.NoNAT, Publish: o.Publish, DNS: o.DNS,
		User: o.User, Entrypoint: o.Entrypoint, Hostname: o.Hostname, ReadOnly: o.ReadOnly,
		Privileged: o.Privileged, CapAdd: o.CapAdd, CapDrop: o.CapDrop, Devices: o.Devices, Init: o.Init,
		Factory: o.Factory, Policy: o.Policy, SharedFS: o.SharedFS,
	}
	for _, m := range o.Mounts {
		r.Mounts = append(r.Mounts, recordMount(m))
	}
	return r
}

// options are the run options of the record, to run its container again.
func (r containerRecord) options() runOptions {
	o := runOptions{
		ID: r.ID, CID: r.CID, Image: r.Image, ImageDigest: r.ImageDigest, Rootfs: r.Rootfs,
		Args: r.Args, Env: r.Env, Workdir: r.Workdir, Volumes: r.Volumes,
		CPUs: r.CPUs, CPUQuota: r.CPUQuota, MemoryMiB: r.MemoryMiB,
		Rm: r.Rm, Interactive: r.Interactive, TTY: r.TTY,
		Kernel: r.Kernel, Initrd: r.Initrd, Accel: r.Accel, Debug: r.Debug,
		NetNS: r.NetNS, Network: r.Network, IP: r.IP, Aliases: r.Aliases,
		NoNAT: r.NoNAT, Publish: r.Publish, DNS: r.DNS,
		User: r.User, Entrypoint: r.Entrypoint, Hostname: r.Hostname, ReadOnly: r.ReadOnly,
		Privileged: r.Privileged, CapAdd: r.CapAdd, CapDrop: r.CapDrop, Devices: r.Devices, Init: r.Init,
		Factory: r.Factory, Policy: r.Policy, SharedFS: r.SharedFS,
	}
	for _, m := range r.Mounts {
		o.Mounts = append(o.Mounts, mountOpt(m))
	}
	return o
}

// saveOptions writes the record of a container run with o in its
// sandbox's directory dir.
func saveOptions(dir string, o runOptions) error {
	b, err := json.Marshal(recordOf(o))
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, optionsFile), b, 0o600); err != nil {
		return fmt.Errorf("save the container's record: %w", err)
	}
	return nil
}

// savedOptions reads container id's record.
func savedOptions(g *globals, id string) (runOptions, error) {
	b, err := os.ReadFile(filepath.Join(g.stateRoot, id, optionsFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := vc.StatusSandbox(context.Background(), g.stateRoot, id); serr != nil {
			return runOptions{}, serr
		}
		return runOptions{}, fmt.Errorf("container %s: not one vc run or vc create made: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return runOptions{}, err
	}
	r, err := parseRecord(b)
	if err != nil {
		return runOptions{}, fmt.Errorf("container %s: %s: %w", id, optionsFile, err)
	}
	return r.options(), nil
}

// parseRecord reads a record of any version: an older one's fields are
// its version's (0 and 1 share theirs), a newer one's fields this vc
// knows are read and the others ignored (see recordVersion).
func parseRecord(b []byte) (containerRecord, error) {
	var r containerRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, err
	}
	if r.Version < 0 {
		return r, fmt.Errorf("version %d: %w", r.Version, errdefs.ErrInvalidArgument)
	}
	return r, nil
}
