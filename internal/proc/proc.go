// Package proc reads what /proc says about processes: start times (to
// tell a process from a later one with the same pid), whether one still
// runs, and which processes have a given command line.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// stat returns a process's state letter and start time (clock ticks after
// boot) from /proc/PID/stat.
func stat(pid int) (string, uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, err
	}
	// The command name is in parentheses and may hold anything: fields
	// start after the last ')'. State is field 3, start time field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return f[0], start, err
}

// State is the process's state letter: R running, S sleeping, D in
// uninterruptible sleep, T stopped, Z zombie...
func State(pid int) (string, error) {
	state, _, err := stat(pid)
	return state, err
}

// StartTime is the process's start time in clock ticks after boot.
func StartTime(pid int) (uint64, error) {
	_, start, err := stat(pid)
	return start, err
}

// Running tells whether process pid exists, is not a zombie, and started
// at start (0: whenever), so a reused pid is not taken for it.
func Running(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	state, s, err := stat(pid)
	return err == nil && state != "Z" && state != "X" && (start == 0 || s == start)
}

// Find returns the processes whose command line (argv) match accepts.
func Find(match func(args []string) bool) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		if match(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
