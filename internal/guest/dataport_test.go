package guest

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func TestDataPortName(t *testing.T) {
	if dataPortName != hypervisor.DataPortName {
		t.Errorf("dataPortName %q, the host's hypervisor.DataPortName %q", dataPortName, hypervisor.DataPortName)
	}
}

// TestAgentDeps keeps out of the agent's binary the host's packages whose
// initialization each start of the binary would pay (the agent, every
// runc init, every exec helper).
func TestAgentDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/virtcontainers/vc/cmd/vc-agent").CombinedOutput()
	if err != nil {
		t.Skipf("go list not available here: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "github.com/virtcontainers/vc/pkg/hypervisor" {
			t.Errorf("the agent links %s", p)
		}
	}
}
