// Command bench measures virtcontainers' figures beside their floors, in one
// run on one machine, and prints them as a table with ratios. Figures, not
// pass/fail: these machines are shared and noisy.
//
//	go run ./test/bench [-only NAME] [-cpuprofile FILE]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/virtcontainers/vc/internal/testutil"
)

// row is one figure beside its floor. A lower value is better unless
// higherBetter; ratio is value/floor.
type row struct {
	figure, unit string
	value, floor float64
	floorName    string
	note         string
	// skipped says why the figure was not measured.
	skipped string
}

type bench struct {
	name string
	run  func() ([]row, error)
}

var benches []bench

func register(name string, run func() ([]row, error)) {
	benches = append(benches, bench{name, run})
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "echo-server" {
		echoServer(os.Args[2])
		return
	}
	only := flag.String("only", "", "run only benches whose name contains this")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the benches (the host side: library, shim clients) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cpuprofile:", err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tvalue\tfloor\tratio\tfloor is\tnote")
	failed := false
	for _, b := range benches {
		if *only != "" && !strings.Contains(b.name, *only) {
			continue
		}
		start := time.Now()
		rows, err := b.run()
		if err != nil {
			fmt.Fprintf(w, "%s\tFAILED\t\t\t\t%v\n", b.name, err)
			failed = true
			continue
		}
		for _, r := range rows {
			if r.skipped != "" {
				fmt.Fprintf(w, "%s\tskipped\t\t\t\t%s\n", r.figure, r.skipped)
				continue
			}
			ratio := "-"
			if r.floor > 0 {
				ratio = fmt.Sprintf("%.2f", r.value/r.floor)
			}
			floor := "-"
			if r.floor > 0 {
				floor = num(r.floor) + " " + r.unit
			}
			fmt.Fprintf(w, "%s\t%s %s\t%s\t%s\t%s\t%s\n", r.figure, num(r.value), r.unit, floor, ratio, r.floorName, r.note)
		}
		fmt.Fprintf(os.Stderr, "bench %s took %s\n", b.name, time.Since(start).Round(time.Millisecond))
	}
	w.Flush()
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// num prints a figure with three significant digits, without an exponent.
func num(v float64) string {
	if v >= 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// buildStatic builds the repository's package pkg into out as a static
// binary (CGO_ENABLED=0), to run as a guest's /init or in any rootfs.
func buildStatic(pkg, out string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
