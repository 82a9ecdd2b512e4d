package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

const ioMiB = 256

func init() {
	register("9p", execAnd9p)
}

// execAnd9p runs in one sandbox with an idle container (exec's own
// latency is the exec bench, exec.go):
//   - 9p: reading and writing (with fsync) an ioMiB MiB file on a volume
//     shared over 9p, timed in the guest, against the same busybox dd on
//     the host on the same directory.
func execAnd9p() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := rootfs.Busybox(filepath.Join(e.dataRoot, "rootfs"))
	if err != nil {
		return nil, err
	}
	vol, err := os.MkdirTemp("", "vc-bench-vol-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(vol)

	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "io", StateRoot: e.stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd}})
	if err != nil {
		return nil, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	spec := oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: spec}); err != nil {
		return nil, err
	}
	if err := s.Container("c").Start(ctx); err != nil {
		return nil, err
	}
	// run execs args in the container and returns its output.
	run := func(id string, args ...string) (string, error) {
		var out bytes.Buffer
		if err := s.Container("c").Exec(ctx, id, &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/sbin:/usr/bin"}}); err != nil {
			return "", err
		}
		streams := s.Container("c").IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
		code, err := s.Container("c").WaitProcess(ctx, id)
		<-streams
		if err == nil && code != 0 {
			err = fmt.Errorf("%q exited %d: %s", args, code, out.String())
		}
		return out.String(), err
	}

	// 9p: write (with fsync), then read, in the guest and on the host.
	dd := func(dir, op string) []string {
		if op == "write" {
			return []string{"dd", "if=/dev/zero", "of=" + dir + "/out", "bs=1M", fmt.Sprintf("count=%d", ioMiB), "conv=fsync"}
		}
		return []string{"dd", "if=" + dir + "/out", "of=/dev/null", "bs=1M"}
	}
	guest := map[string]time.Duration{}
	host := map[string]time.Duration{}
	for _, op := range []string{"write", "read"} {
		out, err := run("dd-"+op, "sh", "-c", "time -p "+strings.Join(dd("/data", op), " "))
		if err != nil {
			return nil, err
		}
		if guest[op], err = timeReal(out); err != nil {
			return nil, err
		}
		t := time.Now()
		if out, err := exec.Command(rootfs.BusyboxBinary, dd(vol, op)...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("host %s: %v: %s", op, err, out)
		}
		host[op] = time.Since(t)
	}
	mbps := func(d time.Duration) float64 { return ioMiB / d.Seconds() }
	return []row{
		{figure: fmt.Sprintf("9p write %d MiB + fsync from the guest", ioMiB), unit: "MiB/s", value: mbps(guest["write"]), floor: mbps(host["write"]),
			floorName: "the same dd on the host, same directory", note: "higher is better; busybox dd bs=1M, timed by `time -p` in the guest (10 ms steps)"},
		{figure: fmt.Sprintf("9p read %d MiB from the guest", ioMiB), unit: "MiB/s", value: mbps(guest["read"]), floor: mbps(host["read"]),
			floorName: "the same dd on the host, same file", note: "higher is better; both from the host's page cache; no guest cache (9p cache=none)"},
	}, nil
}

// timeReal reads the "real" line `time -p` printed.
func timeReal(out string) (time.Duration, error) {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "real "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("time -p: %q: %w", l, err)
			}
			return time.Duration(f * float64(time.Second)), nil
		}
	}
	return 0, fmt.Errorf("no `real` line from time -p in %q", out)
}
