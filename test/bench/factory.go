package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	vcfactory "github.com/virtcontainers/vc/pkg/factory"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

func init() {
	register("factory", factory)
}

// factoryRuns is how many cold and template starts are timed, alternating.
const factoryRuns = 3

// factory compares sandboxes started from a factory's template with cold
// ones, in one run: the start (CreateSandbox, then a container running
// `true` to its exit) and the host memory (QEMU PSS) of the 2nd to 5th
// idle sandbox of one template beside an idle cold sandbox's. The factory
// is made in a directory of its own, not the data root's: a factory
// there would serve every `vc run` on the host.
func factory() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	ctx := context.Background()
	root, err := rootfs.Busybox(filepath.Join(e.dataRoot, "rootfs"))
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "vc-bench-factory-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "factory")
	begin := time.Now()
	f, err := vcfactory.Init(ctx, dir, vcfactory.Config{Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd}})
	if err != nil {
		return nil, err
	}
	initTook := time.Since(begin)
	defer vcfactory.Destroy(dir)

	hv := func(fromTemplate bool) vc.HypervisorConfig {
		h := vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd}
		if fromTemplate {
			h.Factory = dir
		}
		return h
	}
	var sandboxes []*vc.Sandbox
	defer func() {
		for _, s := range sandboxes {
			s.Stop(ctx, 5*time.Second)
			s.Delete(ctx)
		}
	}()
	var sbTimes = map[bool][]time.Duration{}
	start := func(id string, fromTemplate bool, args ...string) (*vc.Sandbox, time.Duration, error) {
		t := time.Now()
		cfg := vc.SandboxConfig{ID: id, StateRoot: e.stateRoot, Hypervisor: hv(fromTemplate)}
		if fromTemplate {
			cfg.VMSource = vcfactory.Source(dir)
		}
		s, err := vc.CreateSandbox(ctx, cfg)
		if err != nil {
			return nil, 0, err
		}
		sbTimes[fromTemplate] = append(sbTimes[fromTemplate], time.Since(t))
		sandboxes = append(sandboxes, s)
		if s.Status().Boot.FromTemplate != fromTemplate {
			return nil, 0, fmt.Errorf("sandbox %s: from template %v, want %v", id, s.Status().Boot.FromTemplate, fromTemplate)
		}
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: oci.DefaultSpec(args, nil, "/", false)}); err != nil {
			return nil, 0, err
		}
		if err := s.Container("c").Start(ctx); err != nil {
			return nil, 0, err
		}
		if args[0] == "true" {
			if code, err := s.Container("c").Wait(ctx); err != nil || code != 0 {
				return nil, 0, fmt.Errorf("sandbox %s: true: %d %v", id, code, err)
			}
		}
		return s, time.Since(t), nil
	}
	remove := func(s *vc.Sandbox) {
		s.Stop(ctx, 5*time.Second)
		s.Delete(ctx)
		sandboxes = sandboxes[:len(sandboxes)-1]
	}

	var cold, warm, coldVM, warmVM, coldSetup, warmSetup []time.Duration
	for i := 0; i < factoryRuns; i++ {
		s, d, err := start(fmt.Sprintf("fcold%d", i), false, "true")
		if err != nil {
			return nil, err
		}
		cold = append(cold, d)
		coldVM = append(coldVM, s.Status().Boot.VMStart+s.Status().Boot.AgentReady)
		coldSetup = append(coldSetup, s.Status().Boot.SandboxSetup)
		remove(s)
		s, d, err = start(fmt.Sprintf("fwarm%d", i), true, "true")
		if err != nil {
			return nil, err
		}
		warm = append(warm, d)
		warmVM = append(warmVM, s.Status().Boot.VMStart+s.Status().Boot.AgentReady)
		warmSetup = append(warmSetup, s.Status().Boot.SandboxSetup)
		remove(s)
	}

	// The cache: one VM of the template kept started; each start waits
	// until it is ready (the cache then starts the next beside the
	// sandbox's setup, as it would).
	cached, cachedTrue, err := cacheStarts(ctx, dir, e.stateRoot, root, hv(true))
	if err != nil {
		return nil, err
	}

	// Memory: one idle cold sandbox and five idle ones of the template,
	// all running; PSS read at the same moment.
	idle := []string{"sleep", "1000"}
	c, _, err := start("fmemcold", false, idle...)
	if err != nil {
		return nil, err
	}
	var warms []*vc.Sandbox
	for i := 1; i <= 5; i++ {
		s, _, err := start(fmt.Sprintf("fmem%d", i), true, idle...)
		if err != nil {
			return nil, err
		}
		warms = append(warms, s)
	}
	time.Sleep(3 * time.Second)
	coldPSS, err := pssKiB(c.Status().VMPid)
	if err != nil {
		return nil, err
	}
	coldAnon, _ := rollupKiB(c.Status().VMPid, "Pss_Anon:")
	coldTCG, err := tcgCacheKiB(c.Status().VMPid)
	if err != nil {
		return nil, err
	}
	var sum, sumAnon, sumTCG int
	var errs []error
	for _, s := range warms[1:] {
		p, err := pssKiB(s.Status().VMPid)
		errs = append(errs, err)
		a, _ := rollupKiB(s.Status().VMPid, "Pss_Anon:")
		tc, err := tcgCacheKiB(s.Status().VMPid)
		errs = append(errs, err)
		sum += p
		sumAnon += a
		sumTCG += tc
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	first, _ := pssKiB(warms[0].Status().VMPid)
	n := len(warms) - 1
	warmPSS := float64(sum) / float64(n)
	m := f.Manifest()
	return []row{
		{figure: "sandbox start from a factory's template (CreateSandbox)", unit: "s", value: median(sbTimes[true][:factoryRuns]).Seconds(), floor: median(sbTimes[false][:factoryRuns]).Seconds(),
			floorName: "the same cold (boot)", note: fmt.Sprintf("median of %d, alternating; VM until the agent answers %.2f s vs %.2f s cold, agent setup (CreateSandbox RPC, NAT) %.2f s vs %.2f s; template made in %.1f s (boot %.1f s); target ratio 0.3",
				factoryRuns, median(warmVM).Seconds(), median(coldVM).Seconds(), median(warmSetup).Seconds(), median(coldSetup).Seconds(), initTook.Seconds(), m.BootTime.Seconds())},
		{figure: "sandbox start from the factory's cache (CreateSandbox)", unit: "s", value: median(cached).Seconds(), floor: median(sbTimes[false][:factoryRuns]).Seconds(),
			floorName: "the same cold (boot)", note: fmt.Sprintf("median of %d; `vc factory cache --size 1`: the VM of the template started and its agent answering before the sandbox asks; no target in the issue", len(cached))},
		{figure: "the same from the cache + a container running `true`", unit: "s", value: median(cachedTrue).Seconds(), floor: median(cold).Seconds(),
			floorName: "the same cold (boot)", note: "under TCG the cache runs a container in each VM before it is ready, so that its translations are made"},
		{figure: "the same from the template + a container running `true`", unit: "s", value: median(warm).Seconds(), floor: median(cold).Seconds(),
			floorName: "the same cold (boot)", note: "the first container in a VM costs the same either way (~1.3 s under TCG): the template saves the boot only"},
		{figure: "host memory of the 2nd-5th idle sandbox of one template: QEMU PSS each", unit: "MiB", value: warmPSS / 1024, floor: float64(coldPSS) / 1024,
			floorName: "an idle cold sandbox beside them", note: fmt.Sprintf("mean of %d; anonymous %.0f MiB vs %.0f MiB cold (TCG's translated code and written guest pages); without TCG's translation buffer (none under KVM) %.0f vs %.0f MiB, ratio %.2f; 1st of the template %.0f MiB; target ratio 0.4",
				n, float64(sumAnon)/float64(n)/1024, float64(coldAnon)/1024,
				(warmPSS-float64(sumTCG)/float64(n))/1024, float64(coldPSS-coldTCG)/1024, (warmPSS-float64(sumTCG)/float64(n))/float64(coldPSS-coldTCG), float64(first)/1024)},
	}, nil
}

// cacheStarts times factoryRuns sandboxes (CreateSandbox, and then with a
// container running `true`) taking a VM from a cache of the factory in
// dir, served in this process.
func cacheStarts(ctx context.Context, dir, stateRoot, root string, h vc.HypervisorConfig) (times, withTrue []time.Duration, err error) {
	cctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- vcfactory.ServeCache(cctx, dir, 1) }()
	defer func() {
		stop()
		<-served
	}()
	for i := 0; i < factoryRuns; i++ {
		deadline := time.Now().Add(time.Minute)
		for {
			st, err := vcfactory.QueryCache(ctx, dir)
			if err == nil && st.Ready > 0 {
				break
			}
			if time.Now().After(deadline) {
				return nil, nil, fmt.Errorf("factory cache: no vm ready after a minute: %+v %v", st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		begin := time.Now()
		s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: fmt.Sprintf("fcache%d", i), StateRoot: stateRoot, Hypervisor: h, VMSource: vcfactory.Source(dir)})
		if err != nil {
			return nil, nil, err
		}
		times = append(times, time.Since(begin))
		fromCache := s.Status().Boot.FromCache
		err = runTrue(ctx, s, root)
		withTrue = append(withTrue, time.Since(begin))
		s.Stop(ctx, 5*time.Second)
		s.Delete(ctx)
		if err != nil {
			return nil, nil, err
		}
		if !fromCache {
			return nil, nil, fmt.Errorf("sandbox fcache%d: not from the cache", i)
		}
	}
	return times, withTrue, nil
}

// runTrue runs `true` in a new container of s, to its exit.
func runTrue(ctx context.Context, s *vc.Sandbox, root string) error {
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: oci.DefaultSpec([]string{"true"}, nil, "/", false)}); err != nil {
		return err
	}
	if err := s.Container("c").Start(ctx); err != nil {
		return err
	}
	if code, err := s.Container("c").Wait(ctx); err != nil || code != 0 {
		return fmt.Errorf("sandbox %s: true: %d %v", s.ID(), code, err)
	}
	return nil
}
