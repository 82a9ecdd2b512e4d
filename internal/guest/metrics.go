package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/virtcontainers/vc/internal/guest/metrics"
)

// metrics renders GetMetrics' answer: the agent process, the guest, and
// the agent's own state.
func (a *Agent) metrics() (string, error) {
	var fams []metrics.Family
	proc, err := metrics.Process(filepath.Join(a.misc.procfs, "self"))
	if err != nil {
		a.log.Debug("metrics", "err", err)
	}
	fams = append(fams, proc...)
	guest, err := metrics.Guest(a.misc.procfs)
	if err != nil {
		a.log.Debug("metrics", "err", err)
	}
	fams = append(fams, guest...)

	fams = append(fams, metrics.Family{
		Name: metrics.AgentPrefix + "info", Help: "The agent's version.", Type: metrics.Gauge,
		Samples: []metrics.Sample{{Labels: []metrics.Label{{Name: "version", Value: Version}}, Value: 1}},
	})
	if n, err := a.containerCount(); err == nil {
		fams = append(fams, metrics.One(metrics.AgentPrefix+"containers", "Containers the agent holds.", metrics.Gauge, float64(n)))
	}
	if c, err := a.misc.copyFiles(); err == nil {
		fams = append(fams, metrics.One(metrics.AgentPrefix+"copy_file_pending", "Files CopyFile is still receiving.", metrics.Gauge, float64(c.Pending())))
	}
	pol := metrics.Family{Name: metrics.AgentPrefix + "policy_info", Help: "The policy set with SetPolicy and enforced on each request, by SHA-256; no sample when none is set.", Type: metrics.Gauge}
	sum, size, ok := a.misc.currentPolicy()
	if ok {
		pol.Samples = []metrics.Sample{{Labels: []metrics.Label{{Name: "sha256", Value: sum}}, Value: 1}}
	}
	fams = append(fams, pol, metrics.One(metrics.AgentPrefix+"policy_bytes", "Size of the policy set with SetPolicy.", metrics.Gauge, float64(size)))

	var b strings.Builder
	if err := metrics.Write(&b, fams); err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	return b.String(), nil
}

// containerCount counts the containers libcontainer keeps state for
// under ContainerRoot (a directory with a state.json each).
func (a *Agent) containerCount() (int, error) {
	ents, err := os.ReadDir(a.cfg.ContainerRoot)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(a.cfg.ContainerRoot, e.Name(), "state.json")); err == nil {
			n++
		}
	}
	return n, nil
}
