package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/vc"
)

// benchRuns is how many single pod starts are timed per runtime class
// (the median is reported).
const benchRuns = 3

// TestBenchK8s is make bench's `k8s` group (test/bench runs it with
// VC_BENCH=1 and reads its BENCH lines): on this cluster, a pod's start
// (kubectl apply to Ready) on vc beside runc, the median of benchRuns,
// runc's start being the floor; 10 pods at once, vc beside runc; and vc's
// start from a factory's template and from the factory's cache of
// started VMs (`vc factory cache`), switched on by rewriting the shim's
// configuration between pods (each pod's shim reads it when it starts).
// The pods have no limits, so their VMs are the template's size.
func TestBenchK8s(t *testing.T) {
	if os.Getenv("VC_BENCH") == "" {
		t.Skip("skipped: a benchmark (make bench, VC_BENCH=1), not a test")
	}
	c := getCluster(t)
	n := newNS(t, "bench")
	pod := func(name, rc string) string {
		return podManifest(name, rc, fmt.Sprintf(`  containers:
  - name: c
    image: %s
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
`, image))
	}
	median := func(ds []time.Duration) float64 {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2].Seconds()
	}
	// start times one pod's apply to Ready, then deletes it; on vc it
	// keeps how the VM started (the only sandbox of the shim's state).
	seq := 0
	var boots []vc.BootTimes
	start := func(rc string) time.Duration {
		t.Helper()
		seq++
		name := fmt.Sprintf("%s-%d", rc, seq)
		t0 := time.Now()
		n.apply(pod(name, rc))
		n.waitReady(name)
		d := time.Since(t0)
		if rc == "vc" {
			if sts, err := vc.ListSandbox(context.Background(), c.vmState); err == nil && len(sts) == 1 {
				boots = append(boots, sts[0].Boot)
			}
		}
		n.k("delete", "pod", name, "--wait", "--timeout=120s")
		return d
	}
	// how says how the last k vc VMs started: from the template or the
	// cache, and the median of their VM start + agent ready.
	how := func(k int) string {
		if len(boots) < k {
			return "VM start unknown"
		}
		var tmpl, cache int
		var vm []time.Duration
		for _, b := range boots[len(boots)-k:] {
			if b.FromTemplate {
				tmpl++
			}
			if b.FromCache {
				cache++
			}
			vm = append(vm, b.VMStart+b.AgentReady)
		}
		return fmt.Sprintf("%d of %d VMs from the template, %d from the cache; VM start to agent ready %.2f s", tmpl, k, cache, median(vm))
	}
	starts := map[string][]time.Duration{}
	for range benchRuns {
		for _, rc := range runtimeClasses {
			starts[rc] = append(starts[rc], start(rc))
		}
	}
	t.Logf("pod starts: vc %v, runc %v", starts["vc"], starts["runc"])
	vcStart, runcStart := median(starts["vc"]), median(starts["runc"])
	bench("k8s pod start vc (apply -> Ready, median of 3)", "s", vcStart, runcStart, "runc's pod start", how(benchRuns))

	burst := map[string]float64{}
	for _, rc := range runtimeClasses {
		var m strings.Builder
		for i := range 10 {
			if i > 0 {
				m.WriteString("---\n")
			}
			m.WriteString(pod(fmt.Sprintf("burst-%s-%d", rc, i), rc))
		}
		t0 := time.Now()
		n.apply(m.String())
		if out, err := n.kErr(nil, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=600s"); err != nil {
			t.Fatalf("10 %s pods not Ready: %v: %s", rc, err, out)
		}
		burst[rc] = time.Since(t0).Seconds()
		n.k("delete", "pod", "--all", "--wait", "--timeout=300s")
	}
	bench("k8s 10 pods at once vc (apply -> all Ready)", "s", burst["vc"], burst["runc"], "10 runc pods", "")

	// The factory: a template for pods of the default size joining a
	// CNI network namespace (no NAT NIC).
	skip := func(why string) {
		for _, f := range []string{"k8s pod start vc from the factory's template", "k8s pod start vc from the factory's cache"} {
			fmt.Printf("BENCH-SKIP|%s|%s\n", f, why)
		}
	}
	ctx := context.Background()
	dir := filepath.Join(c.dir, "factory")
	t0 := time.Now()
	if _, err := factory.Init(ctx, dir, factory.Config{NoNAT: true, Hypervisor: vc.HypervisorConfig{
		Kernel: c.kernel, Initrd: c.initrd, Accel: "tcg", MaxCPUs: 4, MaxMemoryMiB: 2048,
	}}); err != nil {
		skip(fmt.Sprintf("vc factory init: %v", err))
		return
	}
	t.Logf("factory made in %.1f s", time.Since(t0).Seconds())
	defer factory.Destroy(dir)
	shimCfg := filepath.Join(c.dir, "containerd", "vc-shim.toml")
	orig, err := os.ReadFile(shimCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shimCfg, append(slices.Clone(orig), fmt.Sprintf("factory = %q\n", dir)...), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(shimCfg, orig, 0o644)
	var ds []time.Duration
	for range benchRuns {
		ds = append(ds, start("vc"))
	}
	t.Logf("vc pod starts from the template: %v", ds)
	tmpl := median(ds)
	bench("k8s pod start vc from the factory's template", "s", tmpl, runcStart, "runc's pod start",
		fmt.Sprintf("%.2f of vc's cold start; %s", tmpl/vcStart, how(benchRuns)))

	cctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- factory.ServeCache(cctx, dir, 2) }()
	serving := true
	defer func() {
		cancel()
		if serving {
			<-served
		}
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := factory.QueryCache(ctx, dir)
		if err == nil && st.Ready >= 2 {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("BENCH-SKIP|k8s pod start vc from the factory's cache|the cache had no 2 VMs ready after 3 min: %v %+v\n", err, st)
			return
		}
		select {
		case err := <-served:
			serving = false
			fmt.Printf("BENCH-SKIP|k8s pod start vc from the factory's cache|vc factory cache: %v\n", err)
			return
		case <-time.After(time.Second):
		}
	}
	ds = nil
	for range benchRuns {
		ds = append(ds, start("vc"))
		// Let the cache start the next VM, as it would between pods.
		for i := 0; i < 60; i++ {
			if st, err := factory.QueryCache(ctx, dir); err == nil && st.Ready >= 1 {
				break
			}
			time.Sleep(time.Second)
		}
	}
	st, _ := factory.QueryCache(ctx, dir)
	t.Logf("vc pod starts from the cache: %v (cache: %+v)", ds, st)
	cached := median(ds)
	note := fmt.Sprintf("%.2f of vc's cold start; %s", cached/vcStart, how(benchRuns))
	if st.Taken < benchRuns {
		note += fmt.Sprintf("; only %d of %d VMs taken from the cache", st.Taken, benchRuns)
	}
	bench("k8s pod start vc from the factory's cache", "s", cached, runcStart, "runc's pod start", note)
}

// bench prints a BENCH line for test/bench.
func bench(figure, unit string, value, floor float64, floorIs, note string) {
	fmt.Printf("BENCH|%s|%s|%g|%g|%s|%s\n", figure, unit, value, floor, floorIs, note)
}
