// testinit is the /init of the tiny initrd the qemu package's tests boot:
// it loads the modules listed in /etc/vc-agent/modules (relative to
// /lib/modules, as the guest image builder writes them), tells the host it is up on
// the console and on the agent's virtio-serial port, answers a few line
// commands on that port, and powers off when asked or when the ACPI power
// button is pressed.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	portName       = "agent.channel.0"
	sysFinitModule = 313 // x86_64
)

var console *os.File

func logf(format string, args ...any) {
	fmt.Fprintf(console, "vc-test: "+format+"\n", args...)
}

func main() {
	var err error
	console, err = os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		console = os.Stderr
	}
	must(os.MkdirAll("/proc", 0o755))
	must(os.MkdirAll("/sys", 0o755))
	must(os.MkdirAll("/dev", 0o755))
	must(syscall.Mount("proc", "/proc", "proc", 0, ""))
	must(syscall.Mount("sysfs", "/sys", "sysfs", 0, ""))
	if err := syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, ""); err != nil && err != syscall.EBUSY {
		must(err)
	}
	loadModules()
	go powerButton()
	logf("booted")
	port := openPort()
	if port == nil {
		logf("no virtio-serial port named %s", portName)
		powerOff()
	}
	fmt.Fprintf(port, "vc-test-ok\n")
	logf("vc-test-ok")
	serve(port)
}

func must(err error) {
	if err != nil {
		logf("fatal: %v", err)
		powerOff()
	}
}

func powerOff() {
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func loadModules() {
	b, err := os.ReadFile("/etc/vc-agent/modules")
	if err != nil {
		return
	}
	for _, m := range strings.Fields(string(b)) {
		f, err := os.Open(filepath.Join("/lib/modules", m))
		if err != nil {
			logf("module %s: %v", m, err)
			continue
		}
		_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&[]byte{0}[0])), 0)
		f.Close()
		if errno != 0 && errno != syscall.EEXIST {
			logf("module %s: %v", m, errno)
		}
	}
}

// openPort finds the agent port and waits for the host to be connected to
// it (the port reports POLLHUP while nobody is).
func openPort() *os.File {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			name, _ := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if strings.TrimSpace(string(name)) != portName {
				continue
			}
			f, err := os.OpenFile("/dev/"+e.Name(), os.O_RDWR|syscall.O_NOCTTY, 0)
			if err != nil {
				continue
			}
			fds := []pollFd{{fd: int32(f.Fd()), events: 0x1 | 0x4}}
			if n, _ := poll(fds, 0); n >= 0 && fds[0].revents&0x10 == 0 {
				return f
			}
			f.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

func poll(fds []pollFd, timeout int) (int, error) {
	n, _, errno := syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(timeout))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

func serve(port *os.File) {
	r := bufio.NewReader(port)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			logf("port: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
		fmt.Fprintf(port, "%s\n", handle(cmd, arg))
		if cmd == "poweroff" {
			powerOff()
		}
	}
}

func handle(cmd, arg string) string {
	switch cmd {
	case "echo":
		return arg
	case "blk":
		// vda:serial ...
		var out []string
		ents, _ := os.ReadDir("/sys/block")
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "vd") {
				continue
			}
			serial, _ := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
			out = append(out, e.Name()+":"+strings.TrimSpace(string(serial)))
		}
		return "blk " + strings.Join(out, " ")
	case "net":
		var out []string
		ents, _ := os.ReadDir("/sys/class/net")
		for _, e := range ents {
			if e.Name() == "lo" {
				continue
			}
			addr, _ := os.ReadFile(filepath.Join("/sys/class/net", e.Name(), "address"))
			out = append(out, e.Name()+"="+strings.TrimSpace(string(addr)))
		}
		return "net " + strings.Join(out, " ")
	case "mount9p":
		tag, dir, _ := strings.Cut(arg, " ")
		os.MkdirAll(dir, 0o755)
		if err := syscall.Mount(tag, dir, "9p", 0, "trans=virtio,version=9p2000.L"); err != nil {
			return "err " + err.Error()
		}
		return "ok"
	case "write":
		path, data, _ := strings.Cut(arg, " ")
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			return "err " + err.Error()
		}
		return "ok"
	case "read":
		b, err := os.ReadFile(arg)
		if err != nil {
			return "err " + err.Error()
		}
		return "data " + string(bytes.TrimSpace(b))
	case "poweroff":
		return "bye"
	}
	return "err unknown command " + cmd
}

// powerButton powers off when the ACPI power button is pressed
// (system_powerdown), as the real agent should.
func powerButton() {
	var dev string
	for i := 0; i < 200 && dev == ""; i++ {
		ents, _ := os.ReadDir("/sys/class/input")
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "event") {
				continue
			}
			name, _ := os.ReadFile(filepath.Join("/sys/class/input", e.Name(), "device", "name"))
			if strings.TrimSpace(string(name)) == "Power Button" {
				dev = "/dev/input/" + e.Name()
			}
		}
		if dev == "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if dev == "" {
		logf("no power button")
		return
	}
	f, err := os.Open(dev)
	if err != nil {
		logf("power button: %v", err)
		return
	}
	// struct input_event: timeval (16), type u16, code u16, value s32
	ev := make([]byte, 24)
	for {
		if _, err := f.Read(ev); err != nil {
			logf("power button: %v", err)
			return
		}
		typ, code := binary.LittleEndian.Uint16(ev[16:]), binary.LittleEndian.Uint16(ev[18:])
		if typ == 1 && code == 116 { // EV_KEY, KEY_POWER
			logf("power button pressed")
			powerOff()
		}
	}
}
