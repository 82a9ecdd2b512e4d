package vc

import (
	"fmt"

	"github.com/virtcontainers/vc/internal/hostcgroup"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// CgroupConfig puts a sandbox's VM (the hypervisor's process, all its
// threads, and its helpers) in a host cgroup of the sandbox's own, from
// the VM's start, so that its host cost is counted and limited where the
// pod's or the container's is (internal/hostcgroup).
type CgroupConfig struct {
	// Path is an OCI linux.cgroupsPath: a cgroupfs path
	// ("/kubepods/burstable/pod<uid>/<sandbox id>", a CRI sandbox's, under
	// its pod's cgroup) or systemd's "slice:prefix:name". The sandbox
	// makes it, and removes it on Delete. Empty: the VM stays in the
	// cgroups of the process that starts it.
	Path string `json:"path,omitempty"`
	// Mode says which controllers: "account" (default: cpuacct, memory,
	// pids on cgroup v1), "all" (also cpu: the parent's CPU quota
	// throttles the VM) or "off". On cgroup v2 account and all are the
	// same: one cgroup, every controller enabled in it.
	Mode string `json:"mode,omitempty"`
}

// enabled tells whether the VM gets a cgroup (c validated).
func (c CgroupConfig) enabled() bool {
	return c.Path != "" && c.Mode != string(hostcgroup.Off)
}

// validate checks the path and the mode and sets the default mode.
func (c *CgroupConfig) validate() error {
	m, err := hostcgroup.ParseMode("cgroup.mode", c.Mode)
	if err != nil {
		return err
	}
	c.Mode = string(m)
	if c.Path == "" || m == hostcgroup.Off {
		return nil
	}
	if _, err := hostcgroup.ResolvePath(c.Path); err != nil {
		return fmt.Errorf("cgroup.path: %w", err)
	}
	return nil
}

// createCgroup makes the sandbox's host cgroup, recorded in its status
// (HostCgroup) so that Delete, in whichever process, removes it; nil when
// the sandbox has none.
func (s *Sandbox) createCgroup(c CgroupConfig) (*hostcgroup.Cgroup, error) {
	if !c.enabled() {
		return nil, nil
	}
	path, err := hostcgroup.ResolvePath(c.Path)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: cgroup.path: %w", s.id, err)
	}
	cg, err := hostcgroup.Create(path, hostcgroup.Mode(c.Mode))
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	s.status.HostCgroup = path
	s.log.Info("vm cgroup", "path", path, "mode", c.Mode, "dirs", cg.Dirs())
	return cg, nil
}

// removeCgroup removes the sandbox's host cgroup once its VM is gone.
func (s *Sandbox) removeCgroup() error {
	if s.status.HostCgroup == "" {
		return nil
	}
	if err := hostcgroup.Remove(s.status.HostCgroup, hostcgroup.Mode(s.status.Config.Cgroup.Mode)); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	s.status.HostCgroup = ""
	return nil
}

// placer is cg as the hypervisor's CgroupPlacer; nil without one (an
// interface holding a nil pointer is not nil).
func placer(cg *hostcgroup.Cgroup) hypervisor.CgroupPlacer {
	if cg == nil {
		return nil
	}
	return cg
}
