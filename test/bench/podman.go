package main

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/virtcontainers/vc/internal/testutil"
)

func init() {
	register("podman", podmanBench)
}

// podmanBench runs test/runtime's TestBenchPodmanRun (it needs that
// harness: vc-runtime beside the agent under test, the guest image, the
// images loaded into podman) and reads the BENCH lines it prints.
func podmanBench() ([]row, error) {
	cmd := exec.Command("go", "test", "-count=1", "-v", "-run", "^TestBenchPodmanRun$", "./test/runtime/")
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "VC_BENCH=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, lastLines(out, 20))
	}
	return benchRows(out)
}
