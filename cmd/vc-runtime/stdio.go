package main

import (
	"context"
	"os"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/vc"
)

// stdio connects the container's streams: the owner's own (create's), or
// with a terminal a host pseudoterminal whose master goes to the console
// socket.
func (o *owner) stdio(spec *specs.Spec, consoleSocket string) (vc.IO, error) {
	if !spec.Process.Terminal {
		return vc.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, nil
	}
	if consoleSocket == "" {
		// run in the foreground: the caller's terminal is the container's.
		return vc.IO{Stdin: os.Stdin, Stdout: os.Stdout}, nil
	}
	tty, err := sendConsole(consoleSocket, spec.Process.ConsoleSize)
	if err != nil {
		return vc.IO{}, err
	}
	o.tty = tty
	go o.watchSize(tty)
	return vc.IO{Stdin: tty, Stdout: hostTTY{tty}}, nil
}

// watchSize passes the host terminal's size on to the container's, which
// the console socket's holder sets on the master.
func (o *owner) watchSize(tty *os.File) {
	for o.syncSize(tty) == nil {
		time.Sleep(250 * time.Millisecond)
	}
}

// syncSize gives the container's terminal the host terminal's size if it
// changed. start calls it too: the caller sets the size on the master
// before start (podman run -it), and a command that asks for it at once
// (stty size) must not see the 0x0 of before the next poll.
func (o *owner) syncSize(tty *os.File) error {
	ws, err := unix.IoctlGetWinsize(int(tty.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return err
	}
	o.sizeMu.Lock()
	defer o.sizeMu.Unlock()
	if *ws != o.size && ws.Row > 0 && ws.Col > 0 {
		if err := o.c.ResizeTerminal(context.Background(), o.id, uint32(ws.Row), uint32(ws.Col)); err != nil {
			o.log.Warn("terminal size", "rows", ws.Row, "cols", ws.Col, "err", err)
		} else {
			o.size = *ws
		}
	}
	return nil
}

// startSize gives the container's terminal its size before start. The
// console socket's holder (conmon) may set the master's size a moment
// after it asked for start, on a busy host: a 0x0 master is waited for
// (at most startSizeWait) rather than passed on, so that a command that
// asks at once (stty size) sees the size, as with runc.
func (o *owner) startSize(tty *os.File) {
	deadline := time.Now().Add(startSizeWait)
	for {
		o.syncSize(tty)
		o.sizeMu.Lock()
		set := o.size.Row > 0 && o.size.Col > 0
		o.sizeMu.Unlock()
		if set || time.Now().After(deadline) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSizeWait bounds startSize's wait for a size.
const startSizeWait = 500 * time.Millisecond
