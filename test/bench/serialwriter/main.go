// Command serialwriter is the /init of the stdout benchmark's floor image:
// it loads the image's kernel modules (if any), finds the virtio-serial port named
// agent.channel.0 and writes vc_mib MiB of zeros to it (1 MiB writes),
// then reads vc_mib MiB from it and answers one byte, again and again
// until the host stops the VM. Each round then writes vc_mib MiB more
// that a child process reads from /dev/zero and writes into a pipe (64 KiB
// at a time, as dd bs=64k)
// and PID 1 copies from the pipe to the port (256 KiB reads, as the
// agent's data port): the floor that pays the guest's pipe and a second
// process, as a container's stdout does.
// The host reads and writes them raw on the port's socket: the channel's
// own throughput each way, without ttRPC or the agent. Build it static
// (CGO_ENABLED=0); guestimage.Build takes it as the agent.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if os.Getenv("vc_pipe_writer") != "" {
		// The child of the pipe floor: dd if=/dev/zero bs=64k, read
		// and written 64 KiB at a time as dd does.
		mib, _ := strconv.Atoi(os.Getenv("vc_mib"))
		zero, err := os.Open("/dev/zero")
		if err != nil {
			os.Exit(1)
		}
		buf := make([]byte, 64<<10)
		for range mib * 16 {
			if _, err := io.ReadFull(zero, buf); err != nil {
				os.Exit(1)
			}
			if _, err := os.Stdout.Write(buf); err != nil {
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "serialwriter:", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run() error {
	for _, m := range []struct{ src, dst, typ string }{{"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"}} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	// The generic kernel's image lists its modules; the minimal kernel
	// has everything built in and its image no list.
	list, err := os.ReadFile("/etc/vc-agent/modules")
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, name := range strings.Fields(string(list)) {
		f, err := os.Open(filepath.Join("/lib/modules", name))
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			return fmt.Errorf("load %s: %w", name, err)
		}
	}
	mib, err := strconv.Atoi(os.Getenv("vc_mib"))
	if err != nil || mib <= 0 {
		return fmt.Errorf("vc_mib=%q: want a positive whole number", os.Getenv("vc_mib"))
	}
	var dev string
	for deadline := time.Now().Add(10 * time.Second); dev == ""; {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			if b, _ := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name")); strings.TrimSpace(string(b)) == "agent.channel.0" {
				dev = filepath.Join("/dev", e.Name())
			}
		}
		if dev == "" {
			if time.Now().After(deadline) {
				return fmt.Errorf("no virtio-serial port named agent.channel.0")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		for range mib {
			if _, err := f.Write(buf); err != nil {
				return fmt.Errorf("write %s: %w", dev, err)
			}
		}
		for range mib {
			if _, err := io.ReadFull(f, buf); err != nil {
				return fmt.Errorf("read %s: %w", dev, err)
			}
		}
		if _, err := f.Write([]byte{1}); err != nil {
			return fmt.Errorf("write %s: %w", dev, err)
		}
		if err := pipeRound(f, mib); err != nil {
			return err
		}
	}
}

// pipeRound has a child write mib MiB into a pipe and copies the pipe to
// the port.
func pipeRound(port *os.File, mib int) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	p, err := os.StartProcess(os.Args[0], []string{os.Args[0]}, &os.ProcAttr{
		Env:   []string{"vc_pipe_writer=1", "vc_mib=" + strconv.Itoa(mib)},
		Files: []*os.File{nil, w, os.Stderr},
	})
	w.Close()
	if err != nil {
		return fmt.Errorf("pipe writer: %w", err)
	}
	defer p.Wait()
	buf := make([]byte, 256<<10)
	// Both wrapped: os.File's ReadFrom would splice the pipe into the
	// port, which the agent does not (see its data port).
	n, err := io.CopyBuffer(struct{ io.Writer }{port}, struct{ io.Reader }{r}, buf)
	if err != nil {
		return fmt.Errorf("copy the pipe to the port: %w", err)
	}
	if n != int64(mib)<<20 {
		return fmt.Errorf("pipe writer wrote %d bytes, want %d", n, mib<<20)
	}
	return nil
}
