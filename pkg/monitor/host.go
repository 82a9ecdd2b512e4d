package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/prometheus/procfs"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/vc"
)

// DefaultRoots are where vc (/run/vc), the containerd shim (/run/vc/shim)
// and vc-runtime (/run/vc-runtime, a state root per container) keep
// their sandboxes' state. Subdirectories of a root that are not
// sandboxes are searched as roots too, one level down, so /run/vc covers
// the shim's and /run/vc-runtime each container's.
var DefaultRoots = []string{"/run/vc", "/run/vc-runtime"}

// runtimeSandboxID is the id vc-runtime gives every sandbox (one per
// state root, cmd/vc-runtime/state.go); such sandboxes are labelled with
// their state root's directory name instead, the container's id.
const runtimeSandboxID = "vm"

// CRI pod annotations, in the sandbox's or its containers' recorded
// config.
const (
	annPodName      = "io.kubernetes.cri.sandbox-name"
	annPodNamespace = "io.kubernetes.cri.sandbox-namespace"
)

// Host is the Source of the sandboxes on this host: it reads their
// state files without taking their locks and asks their agents through
// the agent socket their owners serve.
type Host struct {
	Roots []string
	fs    procfs.FS
}

// NewHost returns a Host searching roots (DefaultRoots when none).
func NewHost(roots []string) (*Host, error) {
	if len(roots) == 0 {
		roots = DefaultRoots
	}
	fs, err := procfs.NewFS("/proc")
	if err != nil {
		return nil, fmt.Errorf("procfs: %w", err)
	}
	return &Host{Roots: roots, fs: fs}, nil
}

// Sandboxes lists the running sandboxes whose owner and VM are alive.
func (h *Host) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	var out []Sandbox
	for _, root := range h.Roots {
		out = h.scan(out, root, true)
	}
	// The same id under two roots (vc's and the shim's) would make
	// clashing series: the one found later is labelled root/id.
	seen := map[string]bool{}
	for i := range out {
		if seen[out[i].ID] {
			out[i].ID = filepath.Base(out[i].Root) + "/" + out[i].ID
		}
		seen[out[i].ID] = true
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// scan appends the running sandboxes under root, and with nested those
// of its subdirectories that are not sandboxes.
func (h *Host) scan(out []Sandbox, root string, nested bool) []Sandbox {
	ents, err := os.ReadDir(root)
	if err != nil {
		return out // absent: that runtime is not used here
	}
	var inner []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "sandbox.json"))
		if err != nil {
			if nested && os.IsNotExist(err) {
				inner = append(inner, dir)
			}
			continue
		}
		var st vc.SandboxStatus
		if json.Unmarshal(b, &st) != nil || st.State != vc.StateRunning || st.ID != e.Name() {
			continue
		}
		if !proc.Running(st.OwnerPid, st.OwnerStart) || st.VMPid == 0 || !proc.Running(st.VMPid, st.VMStart) {
			continue // stopped without recording it yet
		}
		sb := Sandbox{ID: st.ID, Root: root, RecordedID: st.ID, VMPid: st.VMPid, OwnerPid: st.OwnerPid}
		if !nested && st.ID == runtimeSandboxID {
			sb.ID = filepath.Base(root)
		}
		sb.PodName, sb.PodNamespace = podOf(dir, st.Config.Annotations)
		out = append(out, sb)
	}
	// A root's own sandboxes first: they keep their id when a root
	// below holds the same one.
	for _, dir := range inner {
		out = h.scan(out, dir, false)
	}
	return out
}

// podOf finds a CRI pod's name and namespace in the sandbox's
// annotations or, as the shim records them, its containers' specs.
func podOf(dir string, ann map[string]string) (string, string) {
	if ann[annPodName] != "" {
		return ann[annPodName], ann[annPodNamespace]
	}
	files, _ := filepath.Glob(filepath.Join(dir, "container-*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var c vc.ContainerStatus
		if json.Unmarshal(b, &c) != nil {
			continue
		}
		a := c.Config.Annotations
		if c.Config.Spec != nil && c.Config.Spec.Annotations[annPodName] != "" {
			a = c.Config.Spec.Annotations
		}
		if a[annPodName] != "" {
			return a[annPodName], a[annPodNamespace]
		}
	}
	return "", ""
}

// Guest asks the sandbox's agent for its metrics and its running
// containers' statistics.
func (h *Host) Guest(ctx context.Context, sb Sandbox) (Guest, error) {
	s, err := vc.FetchSandbox(ctx, sb.Root, sb.RecordedID)
	if err != nil {
		return Guest{}, err
	}
	defer s.Close()
	text, err := s.Metrics(ctx)
	if err != nil {
		return Guest{}, err
	}
	stats, err := s.StatsSandbox(ctx)
	if err != nil {
		return Guest{}, fmt.Errorf("sandbox %s: stats: %w", sb.ID, err)
	}
	return Guest{Metrics: text, Containers: stats}, nil
}

// Proc reads process pid's usage from /proc.
func (h *Host) Proc(pid int) (Proc, error) {
	p, err := h.fs.Proc(pid)
	if err != nil {
		return Proc{}, err
	}
	st, err := p.Stat()
	if err != nil {
		return Proc{}, fmt.Errorf("pid %d: stat: %w", pid, err)
	}
	out := Proc{CPUSeconds: st.CPUTime(), RSSBytes: uint64(st.ResidentMemory()), Threads: st.NumThreads}
	if n, err := p.FileDescriptorsLen(); err == nil {
		out.OpenFDs, out.HaveOpenFDs = n, true
	}
	if r, err := p.ProcSMapsRollup(); err == nil {
		out.PSSBytes, out.HavePSS = r.Pss, true
	}
	return out, nil
}
