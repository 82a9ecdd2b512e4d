package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// kvmDevice is where KVM is; a variable for tests.
var kvmDevice = "/dev/kvm"

// accelCacheName is the probe verdict's file in probeCacheRoot.
const accelCacheName = "kvm-probe.json"

// probeCacheRoot is where the KVM probe's verdict is kept for every VM of
// the host: the default state root. /run is a tmpfs, and the verdict's key
// holds the boot id anyway, so it is probed once per boot of the host (and
// QEMU binary). When it cannot be written, the user's cache directory is
// used instead, and failing that each start probes again.
var probeCacheRoot = "/run/vc"

// probeCacheDir returns a writable directory for the verdict, or "".
func probeCacheDir() string {
	dirs := []string{probeCacheRoot}
	if d, err := os.UserCacheDir(); err == nil {
		dirs = append(dirs, filepath.Join(d, "vc"))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err == nil && unix.Access(d, unix.W_OK) == nil {
			return d
		}
	}
	return ""
}

// accelVerdict is a cached probe result.
type accelVerdict struct {
	Key    string        `json:"key"`
	KVM    bool          `json:"kvm"`
	Reason string        `json:"reason"`
	Loop   time.Duration `json:"loop_ns,omitempty"`
	At     time.Time     `json:"at"`
}

// probeFunc runs the KVM probe; tests replace it.
var probeFunc = probeKVM

// resolveAccel turns "auto", "kvm" or "tcg" into "kvm" or "tcg". For auto
// it probes KVM once per boot of the host and QEMU binary, caching the
// verdict in cacheDir (no cache when empty or not writable).
func resolveAccel(want, qemuPath, cacheDir string, log *slog.Logger) (string, error) {
	switch want {
	case hypervisor.AccelTCG:
		return hypervisor.AccelTCG, nil
	case hypervisor.AccelKVM:
		if err := unix.Access(kvmDevice, unix.R_OK|unix.W_OK); err != nil {
			return "", fmt.Errorf("accel kvm: %s: %w (%w)", kvmDevice, err, errdefs.ErrFailedPrecondition)
		}
		return hypervisor.AccelKVM, nil
	case hypervisor.AccelAuto, "":
	default:
		return "", fmt.Errorf("accel %q: %w", want, errdefs.ErrInvalidArgument)
	}
	if err := unix.Access(kvmDevice, unix.R_OK|unix.W_OK); err != nil {
		log.Info("using TCG: KVM not available", "device", kvmDevice, "err", err)
		return hypervisor.AccelTCG, nil
	}
	key := accelCacheKey(qemuPath)
	cache := ""
	if cacheDir != "" {
		cache = filepath.Join(cacheDir, accelCacheName)
		if v, ok := readVerdict(cache, key); ok {
			if v.KVM {
				return hypervisor.AccelKVM, nil
			}
			log.Debug("using TCG: KVM failed its probe (cached)", "reason", v.Reason, "cache", cache)
			return hypervisor.AccelTCG, nil
		}
	}
	v := probeVerdict()
	v.Key = key
	if v.KVM {
		log.Info("KVM probe passed: using KVM", "store_loop", v.Loop)
	} else {
		log.Warn("using TCG: KVM cannot run a stock guest on this host", "reason", v.Reason)
	}
	if cache != "" {
		if err := writeVerdict(cache, v); err != nil {
			log.Debug("KVM probe verdict not cached", "err", err)
		}
	}
	if v.KVM {
		return hypervisor.AccelKVM, nil
	}
	return hypervisor.AccelTCG, nil
}

// probeVerdict runs the probe up to three times: a loaded host may delay
// the vCPU thread once, but hardware KVM is never slow three times.
func probeVerdict() accelVerdict {
	var last error
	for try := 0; try < 3; try++ {
		loop, err := probeFunc(kvmDevice, 2*time.Second)
		switch {
		case err != nil:
			last = err
			if !errors.Is(err, errKVMUnusable) {
				// Could not even ask: not a verdict about KVM, but
				// no reason to use it either.
				return accelVerdict{Reason: err.Error(), At: time.Now()}
			}
			if errors.Is(err, errProbeHung) {
				return accelVerdict{Reason: err.Error(), At: time.Now()}
			}
		case loop > probeLoopBudget:
			last = fmt.Errorf("the probe guest's 100000 stores took %s (budget %s): guest memory writes trap, as on a nested PVM host", loop.Round(time.Microsecond), probeLoopBudget)
		default:
			return accelVerdict{KVM: true, Loop: loop, Reason: "probe passed", At: time.Now()}
		}
	}
	return accelVerdict{Reason: last.Error(), At: time.Now()}
}

// accelCacheKey identifies what the verdict depends on: this boot of the
// host (which KVM module is loaded can change across reboots without the
// release changing), its kernel release, and the QEMU binary.
func accelCacheKey(qemuPath string) string {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	bin := qemuPath
	if st, err := os.Stat(qemuPath); err == nil {
		bin = fmt.Sprintf("%s:%d:%d", qemuPath, st.Size(), st.ModTime().Unix())
	}
	return fmt.Sprintf("%s|%s|%s", unix.ByteSliceToString(uts.Release[:]), strings.TrimSpace(string(bootID)), bin)
}

func readVerdict(path, key string) (accelVerdict, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return accelVerdict{}, false
	}
	var v accelVerdict
	if json.Unmarshal(b, &v) != nil || v.Key != key {
		return accelVerdict{}, false
	}
	return v, true
}

func writeVerdict(path string, v accelVerdict) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

// writeFileAtomic writes data to path (making its directory) through a
// temporary file renamed over it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, mode)
}
