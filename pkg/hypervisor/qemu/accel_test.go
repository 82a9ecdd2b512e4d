package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// fakeKVM points kvmDevice at a file we can open and replaces the probe.
func fakeKVM(t *testing.T, probe func() (time.Duration, error)) *int {
	t.Helper()
	dev := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	oldDev, oldProbe := kvmDevice, probeFunc
	t.Cleanup(func() { kvmDevice, probeFunc = oldDev, oldProbe })
	kvmDevice = dev
	calls := new(int)
	probeFunc = func(string, time.Duration) (time.Duration, error) {
		*calls++
		return probe()
	}
	return calls
}

func TestResolveAccelExplicit(t *testing.T) {
	calls := fakeKVM(t, func() (time.Duration, error) { return 0, nil })
	log := testLogger(t)
	if got, err := resolveAccel(hypervisor.AccelTCG, "/usr/bin/qemu", "", log); err != nil || got != hypervisor.AccelTCG {
		t.Errorf("tcg: %s %v", got, err)
	}
	if got, err := resolveAccel(hypervisor.AccelKVM, "/usr/bin/qemu", "", log); err != nil || got != hypervisor.AccelKVM {
		t.Errorf("kvm: %s %v", got, err)
	}
	if *calls != 0 {
		t.Errorf("an explicit choice ran the probe %d times", *calls)
	}
	kvmDevice = filepath.Join(t.TempDir(), "none")
	if _, err := resolveAccel(hypervisor.AccelKVM, "/usr/bin/qemu", "", log); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("kvm without a device: %v", err)
	}
	if got, err := resolveAccel(hypervisor.AccelAuto, "/usr/bin/qemu", "", log); err != nil || got != hypervisor.AccelTCG {
		t.Errorf("auto without a device: %s %v", got, err)
	}
	if *calls != 0 {
		t.Errorf("auto without a device ran the probe")
	}
	if _, err := resolveAccel("hvf", "/usr/bin/qemu", "", log); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad accel: %v", err)
	}
}

func TestResolveAccelAutoVerdicts(t *testing.T) {
	cases := []struct {
		name  string
		runs  []error         // per call; nil means a loop of loops[i]
		loops []time.Duration // per call
		want  string
		calls int
	}{
		{"fast", []error{nil}, []time.Duration{300 * time.Microsecond}, hypervisor.AccelKVM, 1},
		{"slow three times", []error{nil, nil, nil}, []time.Duration{110 * time.Millisecond, 120 * time.Millisecond, 100 * time.Millisecond}, hypervisor.AccelTCG, 3},
		{"slow once then fast", []error{nil, nil}, []time.Duration{80 * time.Millisecond, time.Millisecond}, hypervisor.AccelKVM, 2},
		{"emulation failure", []error{fmt.Errorf("%w: KVM internal error", errKVMUnusable), fmt.Errorf("%w: KVM internal error", errKVMUnusable), fmt.Errorf("%w: KVM internal error", errKVMUnusable)}, []time.Duration{0, 0, 0}, hypervisor.AccelTCG, 3},
		{"hung", []error{fmt.Errorf("%w: %w", errKVMUnusable, errProbeHung)}, []time.Duration{0}, hypervisor.AccelTCG, 1},
		{"cannot ask", []error{errors.New("open /dev/kvm: permission denied")}, []time.Duration{0}, hypervisor.AccelTCG, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := 0
			calls := fakeKVM(t, func() (time.Duration, error) {
				defer func() { i++ }()
				if i >= len(tc.runs) {
					t.Fatalf("probe called %d times", i+1)
				}
				return tc.loops[i], tc.runs[i]
			})
			cache := t.TempDir()
			got, err := resolveAccel(hypervisor.AccelAuto, "/usr/bin/qemu-system-x86_64", cache, testLogger(t))
			if err != nil || got != tc.want {
				t.Fatalf("got %s %v, want %s", got, err, tc.want)
			}
			if *calls != tc.calls {
				t.Errorf("probe ran %d times, want %d", *calls, tc.calls)
			}
			// The verdict is cached: the next resolution does not probe.
			got2, err := resolveAccel(hypervisor.AccelAuto, "/usr/bin/qemu-system-x86_64", cache, testLogger(t))
			if err != nil || got2 != got || *calls != tc.calls {
				t.Errorf("second resolution: %s %v after %d probes", got2, err, *calls)
			}
			b, err := os.ReadFile(filepath.Join(cache, accelCacheName))
			if err != nil || !strings.Contains(string(b), `"key"`) {
				t.Errorf("cache file: %s %v", b, err)
			}
		})
	}
}

func TestAccelCacheKey(t *testing.T) {
	calls := fakeKVM(t, func() (time.Duration, error) { return time.Millisecond, nil })
	cache := t.TempDir()
	qemuA := filepath.Join(t.TempDir(), "qemu-a")
	os.WriteFile(qemuA, []byte("a"), 0o755)
	if _, err := resolveAccel(hypervisor.AccelAuto, qemuA, cache, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	// Another QEMU binary is another key.
	if err := os.WriteFile(qemuA, []byte("a longer binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveAccel(hypervisor.AccelAuto, qemuA, cache, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if *calls != 2 {
		t.Errorf("probe ran %d times for two QEMU binaries", *calls)
	}
	// A corrupt cache is ignored, then rewritten.
	os.WriteFile(filepath.Join(cache, accelCacheName), []byte("{"), 0o644)
	if _, err := resolveAccel(hypervisor.AccelAuto, qemuA, cache, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if *calls != 3 {
		t.Errorf("probe ran %d times, want 3 after a corrupt cache", *calls)
	}
	if _, ok := readVerdict(filepath.Join(cache, accelCacheName), accelCacheKey(qemuA)); !ok {
		t.Error("verdict not rewritten")
	}
	// An unwritable cache dir still gives an answer.
	if got, err := resolveAccel(hypervisor.AccelAuto, qemuA, "/proc/vc-no-such-dir", testLogger(t)); err != nil || got != hypervisor.AccelKVM {
		t.Errorf("unwritable cache: %s %v", got, err)
	}
}

// TestKVMProbeOnThisHost runs the real probe. Hardware KVM must pass it
// fast; the nested PVM hosts this project runs on must fail it (their
// stock-kernel boots crawl and die), which is the reason it exists.
func TestKVMProbeOnThisHost(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skipf("no /dev/kvm on this host: the probe has nothing to look at (%v)", err)
	}
	start := time.Now()
	loop, err := probeKVM("/dev/kvm", 3*time.Second)
	took := time.Since(start)
	t.Logf("probe: store loop %s, err %v, whole probe %s", loop, err, took)
	if took > 4*time.Second {
		t.Errorf("the probe took %s", took)
	}
	_, pvm := os.Stat("/sys/module/kvm_pvm")
	_, intel := os.Stat("/sys/module/kvm_intel")
	_, amd := os.Stat("/sys/module/kvm_amd")
	if pvm == nil && intel != nil && amd != nil {
		if err == nil && loop <= probeLoopBudget {
			t.Errorf("kvm_pvm host passed the probe (loop %s): auto would pick KVM, which cannot boot a stock kernel here", loop)
		}
	}
	if err != nil && !errors.Is(err, errKVMUnusable) {
		t.Errorf("probe error does not say KVM is unusable: %v", err)
	}
}

func TestProbeCacheDir(t *testing.T) {
	old := probeCacheRoot
	t.Cleanup(func() { probeCacheRoot = old })
	probeCacheRoot = filepath.Join(t.TempDir(), "root")
	if got := probeCacheDir(); got != probeCacheRoot {
		t.Errorf("got %q, want %q", got, probeCacheRoot)
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	probeCacheRoot = "/proc/vc-cannot-exist"
	if got := probeCacheDir(); got != filepath.Join(os.Getenv("XDG_CACHE_HOME"), "vc") {
		t.Errorf("fallback: got %q", got)
	}
}
