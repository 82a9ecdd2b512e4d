package container

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/proc"
)

// A container's init is PID 1 of its PID namespace, and the kernel drops
// a signal sent to it that it neither catches, blocks nor ignores (other
// than SIGKILL and SIGSTOP). Natively a program is at its handlers, and
// waiting, within a millisecond of `runc start`; in a VM under emulation a
// shell takes a good part of a second to set its `trap` and get to its
// `wait`. A signal sent right after start (as the OCI validation's killsig
// does, and any script that starts a container and signals it) was lost
// where runc delivers it, or came between the trap and the wait, so the
// shell ran its trap and then waited on. So while the init is young a
// signal is held back until the init has settled: it would not drop the
// signal and it sleeps (waits for something), for at most signalHold
// after the start; then it is sent whatever the init's state.
const signalHold = 5 * time.Second

// fileID names a file whatever its path: /proc/PID/exe before and after
// an execve.
type fileID struct{ dev, ino uint64 }

// exeOf is the file process pid executes.
func exeOf(pid int) (fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err != nil {
		return fileID{}, err
	}
	return fileID{st.Dev, st.Ino}, nil
}

// sigMasks are a process's signal masks from /proc/PID/status.
type sigMasks struct{ blocked, ignored, caught uint64 }

// readSigMasks reads process pid's signal masks.
func readSigMasks(pid int) (sigMasks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sigMasks{}, err
	}
	return parseSigMasks(b)
}

// parseSigMasks reads the SigBlk, SigIgn and SigCgt lines of a
// /proc/PID/status.
func parseSigMasks(status []byte) (sigMasks, error) {
	var m sigMasks
	fields := map[string]*uint64{"SigBlk": &m.blocked, "SigIgn": &m.ignored, "SigCgt": &m.caught}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		dst := fields[string(k)]
		if dst == nil {
			continue
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
		if err != nil {
			return sigMasks{}, fmt.Errorf("status %s: %w", k, err)
		}
		*dst = n
		seen++
	}
	if seen != len(fields) {
		return sigMasks{}, fmt.Errorf("status: no SigBlk, SigIgn and SigCgt")
	}
	return m, nil
}

// drops reports whether a PID namespace's init with masks m drops sig
// sent to it from outside: it does unless it catches, blocks or ignores
// it (ignoring is what the sender asked for), or sig is SIGKILL or
// SIGSTOP.
func (m sigMasks) drops(sig unix.Signal) bool {
	if sig == unix.SIGKILL || sig == unix.SIGSTOP || sig < 1 || sig > 64 {
		return false
	}
	bit := uint64(1) << (sig - 1)
	return (m.blocked|m.ignored|m.caught)&bit == 0
}

// settled reports whether process pid, a PID namespace's init, would
// take sig now as it would natively once started: it no longer executes
// before (libcontainer's init, when known), catches, blocks or ignores
// sig, and sleeps.
func settled(pid int, sig unix.Signal, before fileID, known bool) (bool, error) {
	if known {
		exe, err := exeOf(pid)
		if err != nil {
			return false, err // exited: a zombie has no exe
		}
		if exe == before {
			return false, nil // a SIGTERM would kill libcontainer's init
		}
	}
	m, err := readSigMasks(pid)
	if err != nil {
		return false, err
	}
	if m.drops(sig) {
		return false, nil
	}
	state, err := proc.State(pid)
	return state == "S", err
}

// signalInit sends sig to the container's init, holding it back while
// the init is young and has not settled (see signalHold).
func (c *Container) signalInit(sig unix.Signal) error {
	p := c.init
	until, before, known := p.hold()
	if !c.prep.privatePidns || sig == unix.SIGKILL || sig == unix.SIGSTOP || time.Now().After(until) {
		return p.signal(sig)
	}
	if ok, err := settled(p.pid, sig, before, known); err != nil || ok || p.isExited() {
		return p.signal(sig) // the error it is, if any
	}
	c.log.Info("holding a signal until the young init settles", "signal", sig, "until", until)
	go p.signalWhenSettled(sig, until, before, known)
	return nil
}

// signalWhenSettled sends sig once the process has settled, or at until,
// or not at all if the process exits first.
func (p *Process) signalWhenSettled(sig unix.Signal, until time.Time, before fileID, known bool) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		ok, err := settled(p.pid, sig, before, known)
		if err == nil && !ok && time.Now().Before(until) {
			continue
		}
		if err := p.signal(sig); err != nil {
			p.c.log.Info("held signal not sent", "signal", sig, "err", err)
			return
		}
		p.c.log.Info("held signal sent", "signal", sig, "settled", ok)
		return
	}
}

// hold is when a signal the init would drop is no longer held for it
// (zero before it started), and what it executed when it was released.
func (p *Process) hold() (until time.Time, before fileID, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started.IsZero() {
		return time.Time{}, fileID{}, false
	}
	return p.started.Add(signalHold), p.preExec, p.preExecKnown
}
