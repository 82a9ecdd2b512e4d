package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/virtcontainers/vc/internal/testutil"
)

func init() {
	register("containerd", containerdBench)
}

// containerdBench runs test/containerd's TestBenchCtrRun (it needs the
// test harness's private containerd) and reads the BENCH lines it prints:
// BENCH|figure|unit|value|floor|floor is|note.
func containerdBench() ([]row, error) {
	return goTestBench("TestBenchCtrRun", "./test/containerd/")
}

// goTestBench runs the go test named test in package pkg with VC_BENCH=1
// and reads the BENCH lines it prints.
func goTestBench(test, pkg string) ([]row, error) {
	cmd := exec.Command("go", "test", "-count=1", "-v", "-timeout", "40m", "-run", "^"+test+"$", pkg)
	cmd.Dir = testutil.RepoRoot()
	cmd.Env = append(os.Environ(), "VC_BENCH=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, lastLines(out, 20))
	}
	return benchRows(out)
}

// benchRows reads the BENCH lines a test printed,
// BENCH|figure|unit|value|floor|floor is|note, and its BENCH-SKIP lines,
// BENCH-SKIP|figure|reason.
func benchRows(out []byte) ([]row, error) {
	var rows []row
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		switch {
		case len(f) == 7 && f[0] == "BENCH":
			v, _ := strconv.ParseFloat(f[3], 64)
			fl, _ := strconv.ParseFloat(f[4], 64)
			rows = append(rows, row{figure: f[1], unit: f[2], value: v, floor: fl, floorName: f[5], note: f[6]})
		case len(f) == 3 && f[0] == "BENCH-SKIP":
			rows = append(rows, row{figure: f[1], skipped: f[2]})
		}
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("no BENCH lines: %s", lastLines(out, 20))
	}
	return rows, nil
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
