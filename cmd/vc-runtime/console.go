package main

import (
	"fmt"
	"net"
	"os"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// sendConsole makes a host pseudoterminal, sends its master over the unix
// socket at path as runc does (SCM_RIGHTS, the master's name as the
// message) and returns its slave, raw: the line discipline that matters
// is the container's terminal's, in the guest.
func sendConsole(path string, size *specs.Box) (*os.File, error) {
	master, slavePath, err := console.NewPty()
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			slave.Close()
		}
	}()
	if c, err := console.ConsoleFromFile(slave); err == nil {
		if err := c.SetRaw(); err != nil {
			return nil, fmt.Errorf("console: %w", err)
		}
	}
	if size != nil && size.Height > 0 && size.Width > 0 {
		master.Resize(console.WinSize{Height: uint16(size.Height), Width: uint16(size.Width)})
	}
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--console-socket: %w", err)
	}
	defer conn.Close()
	uc, okc := conn.(*net.UnixConn)
	if !okc {
		return nil, fmt.Errorf("--console-socket %s: not a unix socket", path)
	}
	if _, _, err := uc.WriteMsgUnix([]byte(master.Name()), unix.UnixRights(int(master.Fd())), nil); err != nil {
		return nil, fmt.Errorf("--console-socket: send the terminal: %w", err)
	}
	ok = true
	return slave, nil
}

// hostTTY writes the container's output to the host terminal sent to the
// console socket with the terminal's output processing off: the guest's
// terminal did it already. Its holder may turn it on (conmon sets ONLCR
// on the master it receives, which would end every line with \r\r\n), so
// it is turned off again before each write.
type hostTTY struct{ f *os.File }

func (t hostTTY) Write(p []byte) (int, error) {
	if rc, err := t.f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			tio, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
			if err == nil && tio.Oflag&unix.OPOST != 0 {
				tio.Oflag &^= unix.OPOST
				unix.IoctlSetTermios(int(fd), unix.TCSETS, tio)
			}
		})
	}
	return t.f.Write(p)
}
