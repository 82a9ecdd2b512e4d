package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMonitor runs `vc monitor` beside two sandboxes started by `vc run
// -d`, with Debian's Prometheus scraping it: Prometheus' query API
// returns a guest series of each sandbox; a guest whose QEMU is stopped
// (SIGSTOP) makes only its own series missing, within the timeout; a
// sandbox that stops disappears from /metrics.
func TestMonitor(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not installed (hack/install-deps.sh installs Debian's): %v", err)
	}
	ids := []string{"e2e-mon-a", "e2e-mon-b"}
	var wg sync.WaitGroup
	errs := make([]string, len(ids))
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, errOut, code := vcRun(t, nil, "run", "-d", "--name", id, "busybox", "--", "sleep", "1000"); code != 0 {
				errs[i] = fmt.Sprintf("run -d %s: exit %d: %s", id, code, errOut)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		t.Cleanup(func() { vcRun(t, nil, "rm", "-f", id) })
	}
	for _, e := range errs {
		if e != "" {
			t.Fatal(e)
		}
	}

	const timeout = 3 * time.Second
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	mon := exec.CommandContext(ctx, vcBin, "--state-root", stateRoot, "monitor", "--listen", addr, "--roots", stateRoot, "--timeout", timeout.String())
	var monLog strings.Builder
	mon.Stdout, mon.Stderr = &monLog, &monLog
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		mon.Wait()
		if t.Failed() {
			t.Logf("vc monitor's log:\n%s", monLog.String())
		}
	})
	metrics := func() (string, time.Duration, error) {
		start := time.Now()
		c := http.Client{Timeout: 30 * time.Second}
		r, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			return "", time.Since(start), err
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		if r.StatusCode != http.StatusOK {
			return "", time.Since(start), fmt.Errorf("GET /metrics: %s: %s", r.Status, b)
		}
		return string(b), time.Since(start), err
	}
	series := func(out, name, id string) bool {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, name+"{") && strings.Contains(l, `sandbox_id="`+id+`"`) {
				return true
			}
		}
		return false
	}
	var out string
	waitFor(t, func() bool {
		out, _, err = metrics()
		return err == nil && series(out, "vc_container_pids", ids[0]) && series(out, "vc_container_pids", ids[1])
	}, "/metrics shows both sandboxes' containers")
	for _, id := range ids {
		for _, name := range []string{"vc_sandbox_info", "vc_guest_memory_total_bytes", "vc_process_resident_memory_bytes", "vc_container_cpu_seconds_total"} {
			if !series(out, name, id) {
				t.Errorf("no %s for %s", name, id)
			}
		}
		if !strings.Contains(out, `vc_scrape_error{pod_name="",pod_namespace="",sandbox_id="`+id+`"} 0`) {
			t.Errorf("scrape error for %s", id)
		}
	}
	if t.Failed() {
		t.Fatalf("/metrics:\n%s", out)
	}

	// A real Prometheus scrapes the monitor; its query API answers with a
	// guest series of each sandbox.
	promAddr := freeAddr(t)
	dir := t.TempDir()
	// The scrape timeout stays above the monitor's, as docs/observability.md says.
	cfg := fmt.Sprintf("scrape_configs:\n  - job_name: vc\n    scrape_interval: 5s\n    scrape_timeout: 5s\n    static_configs:\n      - targets: ['%s']\n", addr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := exec.CommandContext(ctx, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	var promLog strings.Builder
	prom.Stdout, prom.Stderr = &promLog, &promLog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	promDone := make(chan struct{})
	go func() { prom.Wait(); close(promDone) }()
	t.Cleanup(func() {
		prom.Process.Signal(syscall.SIGTERM)
		<-promDone
		if t.Failed() {
			t.Logf("prometheus' log (tail): %s", lastLines(promLog.String(), 20))
		}
	})
	query := func(q string) (map[string]bool, error) {
		r, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer r.Body.Close()
		var res struct {
			Status string
			Data   struct {
				Result []struct {
					Metric map[string]string
				}
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&res); err != nil {
			return nil, err
		}
		got := map[string]bool{}
		for _, s := range res.Data.Result {
			got[s.Metric["sandbox_id"]] = true
		}
		return got, nil
	}
	var got map[string]bool
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err = query("vc_guest_memory_total_bytes")
		if err == nil && got[ids[0]] && got[ids[1]] {
			break
		}
		select {
		case <-promDone:
			t.Fatalf("prometheus exited: %v", prom.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has no vc_guest_memory_total_bytes of both sandboxes: got %v, err %v", got, err)
		}
		time.Sleep(time.Second)
	}
	t.Logf("prometheus query vc_guest_memory_total_bytes: series of %v", got)

	// A hung guest: QEMU of b stopped. The scrape still answers within
	// the timeout, with a's series and vc_scrape_error 1 for b.
	pid := vmPid(t, ids[1])
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := func() { syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(cont)
	out, took, err := metrics()
	cont()
	if err != nil {
		t.Fatalf("scrape with a hung guest: %v", err)
	}
	t.Logf("scrape with b's QEMU stopped took %s (timeout %s)", took.Round(time.Millisecond), timeout)
	if took > timeout+5*time.Second {
		t.Errorf("scrape with a hung guest took %s, timeout %s", took, timeout)
	}
	if !strings.Contains(out, `vc_scrape_error{pod_name="",pod_namespace="",sandbox_id="`+ids[1]+`"} 1`) {
		t.Errorf("hung guest %s not flagged by vc_scrape_error", ids[1])
	}
	if series(out, "vc_container_pids", ids[1]) {
		t.Errorf("hung guest %s still has guest series", ids[1])
	}
	if !series(out, "vc_container_pids", ids[0]) || !series(out, "vc_process_threads", ids[1]) {
		t.Errorf("scrape with a hung guest lost a's guest series or b's host series")
	}
	if t.Failed() {
		t.Fatalf("/metrics:\n%s", out)
	}

	// A sandbox that stops disappears.
	if _, errOut, code := vcRun(t, nil, "stop", "-t", "2", ids[0]); code != 0 {
		t.Fatalf("stop %s: %s", ids[0], errOut)
	}
	waitFor(t, func() bool {
		out, _, err = metrics()
		return err == nil && !series(out, "vc_sandbox_info", ids[0]) && series(out, "vc_container_pids", ids[1])
	}, "stopped sandbox gone from /metrics, the other's guest series back")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `sandbox_id="`+ids[0]+`"`) && !strings.HasPrefix(l, "vc_monitor_scrape_errors_total") {
			t.Errorf("stopped sandbox's series: %s", l)
		}
	}
	for _, id := range ids {
		if _, errOut, code := vcRun(t, nil, "rm", "-f", id); code != 0 {
			t.Errorf("rm -f %s: %s", id, errOut)
		}
		noLeftovers(t, id)
	}
}

// freeAddr is a free 127.0.0.1 port.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// vmPid is the QEMU pid recorded in sandbox id's state.
func vmPid(t *testing.T, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateRoot, id, "sandbox.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		VMPid int `json:"vm_pid"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.VMPid <= 0 {
		t.Fatalf("sandbox %s: no vm_pid (%v)", id, err)
	}
	return st.VMPid
}
