package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
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

// stdioMiB is how much each direction carries, through the library and raw.
const stdioMiB = 64

func init() {
	register("stdio", stdio)
}

// stdio times a container process's standard streams through the library
// (ttRPC to the agent, the agent's pipes) against raw bytes over the same
// virtio-serial port, in both directions:
//   - stdout: dd writes stdioMiB MiB of zeros, the library reads them;
//   - stdin: the library writes stdioMiB MiB, `wc -c` in the container
//     reads them (and says how many it got).
func stdio() ([]row, error) {
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
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "stdio", StateRoot: e.stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd}})
	if err != nil {
		return nil, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "c", Rootfs: root, Spec: oci.DefaultSpec([]string{"sleep", "1000"}, nil, "/", false)}); err != nil {
		return nil, err
	}
	c := s.Container("c")
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	// run execs args with pio and returns how long from the start of the
	// streams to the end of the process and of its output.
	run := func(id string, pio vc.IO, args ...string) (time.Duration, error) {
		if err := c.Exec(ctx, id, &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin:/sbin:/usr/bin"}}); err != nil {
			return 0, err
		}
		t := time.Now()
		streams := c.IOStream(ctx, id, pio)
		code, err := c.WaitProcess(ctx, id)
		if serr := <-streams; err == nil {
			err = serr
		}
		if err == nil && code != 0 {
			err = fmt.Errorf("%q exited %d", args, code)
		}
		return time.Since(t), err
	}

	var n countWriter
	stdoutTook, err := run("out", vc.IO{Stdout: &n, Stderr: io.Discard}, "dd", "if=/dev/zero", "bs=64k", fmt.Sprintf("count=%d", stdioMiB*16))
	if err != nil {
		return nil, fmt.Errorf("stdout: %w", err)
	}
	if n != stdioMiB<<20 {
		return nil, fmt.Errorf("stdout: read %d bytes, want %d", n, stdioMiB<<20)
	}
	var count bytes.Buffer
	stdinTook, err := run("in", vc.IO{Stdin: io.LimitReader(zeros{}, stdioMiB<<20), Stdout: &count, Stderr: io.Discard}, "wc", "-c")
	if err != nil {
		return nil, fmt.Errorf("stdin: %w", err)
	}
	if got, _ := strconv.Atoi(strings.TrimSpace(count.String())); got != stdioMiB<<20 {
		return nil, fmt.Errorf("stdin: wc -c counted %q, want %d", count.String(), stdioMiB<<20)
	}

	rawOut, rawIn, err := rawSerial(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("raw virtio-serial floor: %w", err)
	}
	mbps := func(d time.Duration) float64 { return stdioMiB / d.Seconds() }
	return []row{
		{figure: fmt.Sprintf("stdout of a process in the VM, %d MiB read by the library", stdioMiB), unit: "MiB/s", value: mbps(stdoutTook), floor: rawOut,
			floorName: "raw bytes guest -> host over the same virtio-serial port", note: "higher is better; dd bs=64k; the floor's guest writes 1 MiB at a time as PID 1, no ttRPC, no agent"},
		{figure: fmt.Sprintf("stdin of a process in the VM, %d MiB written by the library", stdioMiB), unit: "MiB/s", value: mbps(stdinTook), floor: rawIn,
			floorName: "raw bytes host -> guest over the same virtio-serial port", note: "higher is better; wc -c reads them; the floor's guest reads as PID 1, no ttRPC, no agent"},
	}, nil
}

// countWriter counts what is written to it.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// rawSerial boots an image whose /init (./serialwriter) writes stdioMiB
// MiB to the agent's virtio-serial port, then reads as many and answers
// one byte. The host reads them raw from the port's socket, then writes
// them and waits for the answer: MiB/s each way, guest to host timed
// from the first byte to the last.
func rawSerial(ctx context.Context, e *vmEnv) (out, in float64, err error) {
	dir, err := os.MkdirTemp("", "vc-bench-serial-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	writer := filepath.Join(dir, "serialwriter")
	if err := buildStatic("./test/bench/serialwriter", writer); err != nil {
		return 0, 0, err
	}
	img, err := guestimage.Build(ctx, guestimage.Options{Root: filepath.Join(dir, "images"), KernelFlavor: e.img.KernelFlavor, KernelPackage: genericPackage(e.img), Agent: writer})
	if err != nil {
		return 0, 0, err
	}
	vm, err := hypervisor.New("qemu", hypervisor.Config{
		ID: "serial", StateDir: filepath.Join(e.stateRoot, "serial"), Kernel: img.Kernel, Initrd: img.Initrd,
		KernelParams: fmt.Sprintf("vc_mib=%d", stdioMiB),
	})
	if err != nil {
		return 0, 0, err
	}
	if err := vm.Start(ctx); err != nil {
		return 0, 0, err
	}
	defer vm.Stop(context.WithoutCancel(ctx), 0)
	addr, ok := strings.CutPrefix(vm.AgentAddress(), "unix://")
	if !ok {
		return 0, 0, fmt.Errorf("agent address %q: not a unix socket (virtio-serial)", vm.AgentAddress())
	}
	var conn net.Conn
	for deadline := time.Now().Add(30 * time.Second); ; {
		if conn, err = net.Dial("unix", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Minute))
	first := make([]byte, 1)
	if _, err := io.ReadFull(conn, first); err != nil {
		return 0, 0, fmt.Errorf("first byte: %w (console: %s)", err, vm.ConsoleLog())
	}
	start := time.Now()
	if n, err := io.CopyN(io.Discard, conn, stdioMiB<<20-1); err != nil {
		return 0, 0, fmt.Errorf("read %d of %d bytes: %w", n+1, stdioMiB<<20, err)
	}
	out = stdioMiB / time.Since(start).Seconds()
	start = time.Now()
	if _, err := io.Copy(conn, io.LimitReader(zeros{}, stdioMiB<<20)); err != nil {
		return 0, 0, fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(conn, first); err != nil {
		return 0, 0, fmt.Errorf("the guest's answer: %w (console: %s)", err, vm.ConsoleLog())
	}
	return out, stdioMiB / time.Since(start).Seconds(), nil
}
