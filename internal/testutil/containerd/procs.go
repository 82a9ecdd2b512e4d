package containerd

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/virtcontainers/vc/internal/proc"
)

// shimPids returns the pids of shims serving the daemon at address: the
// processes whose command line has `-address <address>`.
func shimPids(address string) []int {
	return proc.Find(func(args []string) bool {
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			return false
		}
		for i := 0; i+1 < len(args); i++ {
			if (args[i] == "-address" || args[i] == "--address") && args[i+1] == address {
				return true
			}
		}
		return false
	})
}

// parents maps every process to its parent.
func parents() map[int]int {
	m := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			m[pid] = ppid
		}
	}
	return m
}

// killShims SIGKILLs the shims of the daemon at address and every
// descendant of theirs (containers, VMs), and returns how many it killed.
// Only processes this harness's daemon started are touched.
func killShims(address string) int {
	shims := shimPids(address)
	if len(shims) == 0 {
		return 0
	}
	pp := parents()
	victims := map[int]bool{}
	for _, s := range shims {
		victims[s] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, ppid := range pp {
			if victims[ppid] && !victims[pid] {
				victims[pid] = true
				changed = true
			}
		}
	}
	// The shims first, then what they started: a shim whose child died
	// first could act on it (a shell's wait returns and it exits cleanly).
	for _, s := range shims {
		syscall.Kill(s, syscall.SIGKILL)
	}
	for pid := range victims {
		if !slices.Contains(shims, pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return len(victims)
}

// releaseIPs removes host-local reservations held by the given pod
// sandboxes (CNI container id = sandbox id), for pods whose CNI DEL never
// ran.
func releaseIPs(sandboxes []string) {
	if len(sandboxes) == 0 {
		return
	}
	dir := filepath.Join(cniIPAMDir, CNINetwork)
	for _, id := range sandboxes {
		for _, ip := range IPsHeldBy(id) {
			os.Remove(filepath.Join(dir, ip))
		}
	}
}

// IPsHeldBy returns the addresses the shared host-local IPAM store reserves
// for CNI container id (for CRI pods, the sandbox id).
func IPsHeldBy(id string) []string {
	var ips []string
	dir := filepath.Join(cniIPAMDir, CNINetwork)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		owner, _, _ := strings.Cut(strings.ReplaceAll(string(b), "\r", ""), "\n")
		if strings.TrimSpace(owner) == id {
			ips = append(ips, e.Name())
		}
	}
	return ips
}
