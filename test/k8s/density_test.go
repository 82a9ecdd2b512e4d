package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/proc"
)

// TestDensity: 10 small pods created at once all become Ready; once their
// namespace is deleted nothing of them is left on the node: no QEMU, no
// shim, no sandbox state, no mount under the VMs' state, no network
// namespace (the taps live in those). The runtime classes run one after the other, so
// what is counted is theirs.
func TestDensity(t *testing.T) {
	c := getCluster(t)
	for _, rc := range runtimeClasses {
		t.Run(rc, func(t *testing.T) {
			n := newNS(t, "density-"+rc)
			var m strings.Builder
			for i := range 10 {
				if i > 0 {
					m.WriteString("---\n")
				}
				m.WriteString(podManifest(fmt.Sprintf("p%d", i), rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    resources:
      limits: {cpu: 100m, memory: 32Mi}
`, image)))
			}
			t0 := time.Now()
			n.apply(m.String())
			if out, err := n.kErr(nil, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=600s"); err != nil {
				t.Fatalf("10 pods not Ready: %v: %s\n%s", err, out, n.k("get", "pods", "-o", "wide"))
			}
			t.Logf("%s: 10 pods Ready %.1f s after apply", rc, time.Since(t0).Seconds())
			if rc == "vc" {
				if q := len(c.qemuPids()); q != 10 {
					t.Errorf("%d QEMU processes for 10 vc pods", q)
				}
			}
			t0 = time.Now()
			n.c.kubectl(t, "delete", "namespace", n.name, "--wait", "--timeout=300s")
			t.Logf("%s: namespace deleted %.1f s after the delete", rc, time.Since(t0).Seconds())
			n.waitFor("nothing of the pods left", 2*time.Minute, func() bool {
				left := c.leftovers()
				if left != "" {
					t.Logf("left: %s", left)
				}
				return left == ""
			})
		})
	}
}

// qemuPids are the QEMU processes of the cluster's vc pods.
func (c *cluster) qemuPids() []int {
	return proc.Find(func(args []string) bool {
		return strings.Contains(filepath.Base(args[0]), "qemu-system") && strings.Contains(strings.Join(args, " "), c.vmState+"/")
	})
}

// leftovers describes what of the cluster's pods is still on the node.
func (c *cluster) leftovers() string {
	var out []string
	if q := c.qemuPids(); len(q) > 0 {
		out = append(out, fmt.Sprintf("QEMU %v", q))
	}
	shims := proc.Find(func(args []string) bool {
		return strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && strings.Contains(strings.Join(args, " "), " "+c.ctrdSock)
	})
	if len(shims) > 0 {
		out = append(out, fmt.Sprintf("shims %v", shims))
	}
	if ents, _ := os.ReadDir(c.vmState); len(ents) > 0 {
		out = append(out, fmt.Sprintf("%d sandbox state dirs in %s", len(ents), c.vmState))
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (strings.HasPrefix(f[4], c.vmState+"/") || strings.Contains(f[4], "/netns/") && strings.HasPrefix(f[4], filepath.Dir(c.ctrdSock)+"/")) {
			out = append(out, "mount "+f[4])
		}
	}
	return strings.Join(out, ", ")
}
