package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
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

// stdioRounds is how many times each is measured.
const stdioRounds = 3

func init() {
	register("stdio", stdio)
}

// stdio times a container process's standard streams through the library
// (the data port, or ttRPC to an agent without it; the agent's pipes) against raw bytes over the same
// virtio-serial port, in both directions:
//   - stdout: dd writes stdioMiB MiB of zeros, the library reads them;
//   - stdin: the library writes stdioMiB MiB, cat in the container reads
//     them into /dev/null.
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

	raw, err := startRawSerial(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("raw virtio-serial floor: %w", err)
	}
	defer raw.close()
	// Rounds alternate the library and the raw port, so that the load
	// of a shared machine falls on both alike; medians are compared.
	var libOut, libIn, rawOut, rawIn, rawPipe []float64
	// QEMU's CPU time per MiB: what the emulated guest spent, less
	// sensitive to the load of a shared machine than the wall clock.
	var cpuLibOut, cpuLibIn, cpuRawOut, cpuRawIn, cpuRawPipe, cpuPipe []float64
	libPid := s.Status().VMPid
	// The agent's memory before and after: what its buffers and its
	// garbage collector's pace keep.
	agentRSS := func() float64 {
		m, err := s.Metrics(ctx)
		if err != nil {
			return 0
		}
		return metric(m, "vc_agent_process_resident_memory_bytes") / (1 << 20)
	}
	rssBefore := agentRSS()
	mbps := func(d time.Duration) float64 { return stdioMiB / d.Seconds() }
	for i := range stdioRounds {
		var n countWriter
		cpu := cpuTime(libPid)
		took, err := run(fmt.Sprintf("out%d", i), vc.IO{Stdout: &n, Stderr: io.Discard}, "dd", "if=/dev/zero", "bs=64k", fmt.Sprintf("count=%d", stdioMiB*16))
		if err != nil {
			return nil, fmt.Errorf("stdout: %w", err)
		}
		if n != stdioMiB<<20 {
			return nil, fmt.Errorf("stdout: read %d bytes, want %d", n, stdioMiB<<20)
		}
		libOut = append(libOut, mbps(took))
		cpuLibOut = append(cpuLibOut, (cpuTime(libPid)-cpu).Seconds()*1000/stdioMiB)
		cpu = cpuTime(libPid)
		// cat, not wc -c, which takes each byte apart (50-100 ms a MiB
		// under TCG). cat ends only once the library closed its stdin,
		// which it does after the last byte was written.
		input := &countReader{r: io.LimitReader(zeros{}, stdioMiB<<20)}
		took, err = run(fmt.Sprintf("in%d", i), vc.IO{Stdin: input, Stdout: io.Discard, Stderr: io.Discard}, "sh", "-c", "cat >/dev/null")
		if err != nil {
			return nil, fmt.Errorf("stdin: %w", err)
		}
		if input.n != stdioMiB<<20 {
			return nil, fmt.Errorf("stdin: the library took %d bytes, want %d", input.n, stdioMiB<<20)
		}
		libIn = append(libIn, mbps(took))
		cpuLibIn = append(cpuLibIn, (cpuTime(libPid)-cpu).Seconds()*1000/stdioMiB)
		// The part of stdout's cost that is the process's own: the same
		// dd into a pipe that cat empties, all in the guest.
		cpu = cpuTime(libPid)
		if _, err := run(fmt.Sprintf("pipe%d", i), vc.IO{}, "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=64k count=%d 2>/dev/null | cat >/dev/null", stdioMiB*16)); err != nil {
			return nil, fmt.Errorf("pipe in the guest: %w", err)
		}
		cpuPipe = append(cpuPipe, (cpuTime(libPid)-cpu).Seconds()*1000/stdioMiB)
		out, in, pipe, cpuOut, cpuIn, cpuPipeOut, err := raw.round()
		if err != nil {
			return nil, fmt.Errorf("raw virtio-serial floor: %w", err)
		}
		rawOut, rawIn, rawPipe = append(rawOut, out), append(rawIn, in), append(rawPipe, pipe)
		cpuRawOut, cpuRawIn, cpuRawPipe = append(cpuRawOut, cpuOut), append(cpuRawIn, cpuIn), append(cpuRawPipe, cpuPipeOut)
	}
	rssAfter := agentRSS()
	note := fmt.Sprintf("higher is better; median of %d rounds, each the library then the raw port", stdioRounds)
	return []row{
		{figure: fmt.Sprintf("stdout of a process in the VM, %d MiB read by the library", stdioMiB), unit: "MiB/s", value: medianF(libOut), floor: medianF(rawOut),
			floorName: "raw bytes guest -> host over the same virtio-serial port", note: note + "; dd bs=64k; the floor's guest writes 1 MiB at a time as PID 1, no ttRPC, no agent"},
		{figure: fmt.Sprintf("stdout of a process in the VM, %d MiB read by the library (the same runs)", stdioMiB), unit: "MiB/s", value: medianF(libOut), floor: medianF(rawPipe),
			floorName: "a child dd's /dev/zero into a pipe that PID 1 copies to the same kind of port", note: "the floor that pays the guest's pipe, /dev/zero and second process, as a container's dd does; 64 KiB reads and writes, 256 KiB copies"},
		{figure: fmt.Sprintf("stdin of a process in the VM, %d MiB written by the library", stdioMiB), unit: "MiB/s", value: medianF(libIn), floor: medianF(rawIn),
			floorName: "raw bytes host -> guest over the same virtio-serial port", note: note + "; cat reads them; the floor's guest reads as PID 1"},
		{figure: "QEMU CPU per MiB of stdout through the library", unit: "ms", value: medianF(cpuLibOut), floor: medianF(cpuRawOut),
			floorName: "the same for raw bytes guest -> host", note: fmt.Sprintf("lower is better; user+system time of the VM's QEMU process over the transfer (10 ms ticks); the same dd into a pipe that cat empties, in the guest: %.3g ms; the pipe floor: %.3g ms", medianF(cpuPipe), medianF(cpuRawPipe))},
		{figure: "QEMU CPU per MiB of stdin through the library", unit: "ms", value: medianF(cpuLibIn), floor: medianF(cpuRawIn),
			floorName: "the same for raw bytes host -> guest", note: "lower is better"},
		{figure: "agent RSS after the transfers", unit: "MiB", value: rssAfter, note: fmt.Sprintf("before them (sandbox + 1 idle container): %.3g MiB; target 20 MiB", rssBefore)},
	}, nil
}

// medianF is the median of v.
func medianF(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// cpuTime is the user and system time process pid has used, or 0.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis; utime and stime
	// are the stat's 14th and 15th, in clock ticks (100 a second).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// countReader counts what is read from r.
type countReader struct {
	r io.Reader
	n int
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// countWriter counts what is written to it.
type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// rawPort is a VM whose /init (./serialwriter) writes stdioMiB MiB to
// the agent's virtio-serial port, then reads as many and answers one
// byte, round after round; the host reads and writes them raw on the
// port's socket.
type rawPort struct {
	conn net.Conn
	vm   hypervisor.Hypervisor
	dir  string
}

func startRawSerial(ctx context.Context, e *vmEnv) (_ *rawPort, err error) {
	r := &rawPort{}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dir, err = os.MkdirTemp("", "vc-bench-serial-"); err != nil {
		return nil, err
	}
	writer := filepath.Join(r.dir, "serialwriter")
	if err := buildStatic("./test/bench/serialwriter", writer); err != nil {
		return nil, err
	}
	img, err := guestimage.Build(ctx, guestimage.Options{Root: filepath.Join(r.dir, "images"), KernelFlavor: e.img.KernelFlavor, KernelPackage: genericPackage(e.img), Agent: writer})
	if err != nil {
		return nil, err
	}
	vm, err := hypervisor.New("qemu", hypervisor.Config{
		ID: "serial", StateDir: filepath.Join(e.stateRoot, "serial"), Kernel: img.Kernel, Initrd: img.Initrd,
		KernelParams: fmt.Sprintf("vc_mib=%d", stdioMiB),
	})
	if err != nil {
		return nil, err
	}
	if err := vm.Start(ctx); err != nil {
		return nil, err
	}
	r.vm = vm
	addr, ok := strings.CutPrefix(vm.Info().AgentAddress, "unix://")
	if !ok {
		return nil, fmt.Errorf("agent address %q: not a unix socket (virtio-serial)", vm.Info().AgentAddress)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if r.conn, err = net.Dial("unix", addr); err == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// round takes stdioMiB MiB from the guest, then gives it as many: MiB/s
// each way, guest to host timed from the first byte to the last, host to
// guest until the guest's answer.
// QEMU's CPU time per MiB each way beside.
func (r *rawPort) round() (out, in, pipe, cpuOut, cpuIn, cpuPipe float64, err error) {
	r.conn.SetDeadline(time.Now().Add(5 * time.Minute))
	first := make([]byte, 1)
	if _, err := io.ReadFull(r.conn, first); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("first byte: %w (console: %s)", err, r.vm.Info().ConsoleLog)
	}
	cpu := cpuTime(r.vm.Info().Pid)
	start := time.Now()
	if n, err := io.CopyN(io.Discard, r.conn, stdioMiB<<20-1); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("read %d of %d bytes: %w", n+1, stdioMiB<<20, err)
	}
	out = stdioMiB / time.Since(start).Seconds()
	cpuOut = (cpuTime(r.vm.Info().Pid) - cpu).Seconds() * 1000 / stdioMiB
	cpu = cpuTime(r.vm.Info().Pid)
	start = time.Now()
	if _, err := io.Copy(r.conn, io.LimitReader(zeros{}, stdioMiB<<20)); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(r.conn, first); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("the guest's answer: %w (console: %s)", err, r.vm.Info().ConsoleLog)
	}
	in = stdioMiB / time.Since(start).Seconds()
	cpuIn = (cpuTime(r.vm.Info().Pid) - cpu).Seconds() * 1000 / stdioMiB
	// The pipe floor: a child writes into a pipe that PID 1 copies to
	// the port; timed from its first byte, as stdout above.
	if _, err := io.ReadFull(r.conn, first); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("pipe floor, first byte: %w (console: %s)", err, r.vm.Info().ConsoleLog)
	}
	cpu = cpuTime(r.vm.Info().Pid)
	start = time.Now()
	if n, err := io.CopyN(io.Discard, r.conn, stdioMiB<<20-1); err != nil {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("pipe floor: read %d of %d bytes: %w", n+1, stdioMiB<<20, err)
	}
	pipe = stdioMiB / time.Since(start).Seconds()
	cpuPipe = (cpuTime(r.vm.Info().Pid) - cpu).Seconds() * 1000 / stdioMiB
	return out, in, pipe, cpuOut, cpuIn, cpuPipe, nil
}

func (r *rawPort) close() {
	if r.conn != nil {
		r.conn.Close()
	}
	if r.vm != nil {
		r.vm.Stop(context.Background(), 0)
	}
	if r.dir != "" {
		os.RemoveAll(r.dir)
	}
}
