package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

const (
	execRuns  = 10
	trueLoops = 100
	ioMiB     = 256
	stdoutMiB = 64
)

func init() {
	register("exec+9p", execAnd9p)
}

// execAnd9p runs in one sandbox with an idle container:
//   - exec: `true` through the whole stack (library, ttRPC, the agent,
//     libcontainer's setns exec), median of execRuns, against the same
//     `true` forked and executed by a shell in the guest (no RPC, no
//     container layer), timed over trueLoops runs;
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

	// exec
	var execs []time.Duration
	for i := range execRuns {
		t := time.Now()
		if _, err := run(fmt.Sprintf("true%d", i), "true"); err != nil {
			return nil, err
		}
		execs = append(execs, time.Since(t))
	}
	out, err := run("loop", "sh", "-c", fmt.Sprintf("time -p sh -c 'i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done'", trueLoops))
	if err != nil {
		return nil, err
	}
	loop, err := timeReal(out)
	if err != nil {
		return nil, err
	}
	inGuest := loop / trueLoops

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
	// stdout: a container process writes stdoutMiB MiB to its stdout,
	// which the library reads (agent ReadStdout over ttRPC); against the
	// same dd writing to /dev/null in the guest.
	var n countWriter
	if err := s.Container("c").Exec(ctx, "out", &specs.Process{Args: []string{"dd", "if=/dev/zero", "bs=64k", fmt.Sprintf("count=%d", stdoutMiB*16)}, Cwd: "/", Env: []string{"PATH=/bin:/sbin:/usr/bin"}}); err != nil {
		return nil, err
	}
	t := time.Now()
	streams := s.Container("c").IOStream(ctx, "out", vc.IO{Stdout: &n, Stderr: &bytes.Buffer{}})
	if code, err := s.Container("c").WaitProcess(ctx, "out"); err != nil || code != 0 {
		return nil, fmt.Errorf("stdout dd: exit %d: %v", code, err)
	}
	<-streams
	stdoutTook := time.Since(t)
	if n != stdoutMiB<<20 {
		return nil, fmt.Errorf("stdout: read %d bytes, want %d", n, stdoutMiB<<20)
	}
	out, err = run("null", "sh", "-c", fmt.Sprintf("time -p dd if=/dev/zero of=/dev/null bs=64k count=%d", stdoutMiB*16))
	if err != nil {
		return nil, err
	}
	toNull, err := timeReal(out)
	if err != nil {
		return nil, err
	}

	raw, err := rawSerial(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("raw virtio-serial floor: %w", err)
	}

	mbps := func(d time.Duration) float64 { return ioMiB / d.Seconds() }
	return []row{
		{figure: "exec `true` in a running container (library -> agent -> libcontainer)", unit: "s", value: median(execs).Seconds(), floor: inGuest.Seconds(),
			floorName: "`true` forked by a shell in the guest", note: fmt.Sprintf("median of %d; floor over %d runs; TCG", execRuns, trueLoops)},
		{figure: fmt.Sprintf("9p write %d MiB + fsync from the guest", ioMiB), unit: "MiB/s", value: mbps(guest["write"]), floor: mbps(host["write"]),
			floorName: "the same dd on the host, same directory", note: "higher is better; busybox dd bs=1M, timed by `time -p` in the guest (10 ms steps)"},
		{figure: fmt.Sprintf("9p read %d MiB from the guest", ioMiB), unit: "MiB/s", value: mbps(guest["read"]), floor: mbps(host["read"]),
			floorName: "the same dd on the host, same file", note: "higher is better; both from the host's page cache; no guest cache (9p cache=none)"},
		{figure: fmt.Sprintf("stdout of a process in the VM, %d MiB read by the library", stdoutMiB), unit: "MiB/s", value: stdoutMiB / stdoutTook.Seconds(), floor: raw,
			floorName: "raw bytes over the same virtio-serial port", note: fmt.Sprintf("higher is better; the floor's guest writes 1 MiB at a time as PID 1, no ttRPC, no agent; the same dd to /dev/null in the guest: %.0f MiB/s", stdoutMiB/max(toNull, 10*time.Millisecond).Seconds())},
	}, nil
}

// countWriter counts what is written to it.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

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

// rawSerial boots an image whose /init (./serialwriter) writes stdoutMiB
// MiB to the agent's virtio-serial port, and reads them on the host from
// the port's socket: MiB/s from the first byte to the last.
func rawSerial(ctx context.Context, e *vmEnv) (float64, error) {
	dir, err := os.MkdirTemp("", "vc-bench-serial-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	writer := filepath.Join(dir, "serialwriter")
	if err := buildStatic("./test/bench/serialwriter", writer); err != nil {
		return 0, err
	}
	img, err := guestimage.Build(ctx, guestimage.Options{Root: filepath.Join(dir, "images"), KernelFlavor: e.img.KernelFlavor, KernelPackage: genericPackage(e.img), Agent: writer})
	if err != nil {
		return 0, err
	}
	vm, err := hypervisor.New("qemu", hypervisor.Config{
		ID: "serial", StateDir: filepath.Join(e.stateRoot, "serial"), Kernel: img.Kernel, Initrd: img.Initrd,
		KernelParams: fmt.Sprintf("vc_mib=%d", stdoutMiB),
	})
	if err != nil {
		return 0, err
	}
	if err := vm.Start(ctx); err != nil {
		return 0, err
	}
	defer vm.Stop(context.WithoutCancel(ctx), 0)
	addr, ok := strings.CutPrefix(vm.AgentAddress(), "unix://")
	if !ok {
		return 0, fmt.Errorf("agent address %q: not a unix socket (virtio-serial)", vm.AgentAddress())
	}
	var conn net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		if conn, err = net.Dial("unix", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	first := make([]byte, 1)
	if _, err := io.ReadFull(conn, first); err != nil {
		return 0, fmt.Errorf("first byte: %w (console: %s)", err, vm.ConsoleLog())
	}
	start := time.Now()
	n, err := io.CopyN(io.Discard, conn, stdoutMiB<<20-1)
	if err != nil {
		return 0, fmt.Errorf("read %d of %d bytes: %w", n+1, stdoutMiB<<20, err)
	}
	return stdoutMiB / time.Since(start).Seconds(), nil
}
