package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/spawn"
	"github.com/virtcontainers/vc/pkg/vc"
)

// runOwner creates the sandbox and container, runs it, and tears the VM
// down when it exits. Attached when ready is nil; a detached owner reports
// readiness (or the error) on ready and its output goes only to the log.
func runOwner(ctx context.Context, g *globals, o runOptions, ready *spawn.Ready) (err error) {
	detached := ready != nil
	// The exit code travels with the reason (exitError.ExitCode).
	report := func(err error) {
		ready.Report(err)
		ready = nil
	}
	defer func() { report(err) }()
	// A first run that fails leaves no anonymous volume behind: no
	// container has it (a run again keeps the container's).
	running := false
	defer func() {
		if !running && o.Carry == "" {
			removeAnonymousVolumes(context.WithoutCancel(ctx), g, o)
		}
	}()

	// Its volumes are made here, its record saved after the VM's boot:
	// vc volume rm waits for it.
	releaseVolumes, err := reserveVolumes(g)
	if err != nil {
		return err
	}
	defer func() { releaseVolumes() }()
	ccfg, src, err := containerConfig(g, &o)
	if err != nil {
		return err
	}
	// Bad input fails before a VM boots (with 126 for a command that
	// cannot be invoked: an environment execve refuses).
	if err := ccfg.Validate(); err != nil {
		return startError(err)
	}
	scfg, err := sandboxConfig(ctx, g, o)
	if err != nil {
		return err
	}
	if o.Network != "" {
		// Its address is this process's until the VM is gone.
		nic, leave, err := joinNetwork(g, o)
		if err != nil {
			return err
		}
		defer leave()
		scfg.Bridges = []vc.BridgeNIC{nic}
	}
	s, err := vc.CreateSandbox(ctx, scfg)
	if err != nil {
		return err
	}
	// Until the container runs, a failure removes everything. A container
	// run again gives back what it wrote to the carry directory first,
	// for vc start to put the container back as it was.
	failed := true
	defer func() {
		if failed {
			s.Stop(context.WithoutCancel(ctx), 5*time.Second)
			if o.Carry != "" {
				if err := giveBack(s.Dir(), o.Carry); err != nil {
					slog.Error("run again failed: the container's files stay in its sandbox", "id", o.ID, "err", err)
					return
				}
			}
			s.Delete(context.WithoutCancel(ctx))
		}
	}()
	if src.image != nil {
		o.ImageDigest = src.image.Digest
	}
	if err := saveOptions(s.Dir(), o); err != nil {
		return err
	}
	releaseVolumes()
	releaseVolumes = func() {}
	if o.Carry != "" {
		if err := carryIn(o.Carry, s.Dir()); err != nil {
			return err
		}
	}
	ccfg.LogPath = filepath.Join(s.Dir(), "container.log")
	if o.Rootfs == "" {
		// An image: the container writes into a layer of its own. A
		// --rootfs directory is the user's, written as runc writes a
		// bundle's.
		if ccfg.Rootfs, err = mountRootfs(s.Dir(), src); err != nil {
			return err
		}
	}
	if err := copyUpVolumes(g, o, ccfg.Rootfs); err != nil {
		return err
	}
	// As docker: /etc/hosts, /etc/hostname and, behind the NAT, the
	// NAT's resolver, unless -v binds files of the user's there.
	if err := s.BindEtcFiles(&ccfg); err != nil {
		return err
	}
	if o.Network != "" {
		if err := publishNames(g, s, o); err != nil {
			return err
		}
	}
	if err := s.CreateContainer(ctx, ccfg); err != nil {
		return startError(err)
	}
	clog, err := openContainerLog(ccfg.LogPath)
	if err != nil {
		return err
	}
	defer clog.Close()
	logOut, logErr := clog.stream("stdout"), clog.stream("stderr")
	defer logOut.Flush()
	defer logErr.Flush()

	var stdin io.WriteCloser
	pio := vc.IO{Stdout: logOut, Stderr: logErr}
	if detached && o.Interactive {
		// In the background, stdin is what attached clients send.
		pio.Stdin, stdin = io.Pipe()
		defer stdin.Close()
	}
	att, err := serveAttach(s.Dir(), stdin)
	if err != nil {
		return err
	}
	defer att.Close()
	pio.Stdout = io.MultiWriter(pio.Stdout, att.stream(1))
	pio.Stderr = io.MultiWriter(pio.Stderr, att.stream(2))
	var restore func()
	if !detached {
		pio.Stdout = io.MultiWriter(os.Stdout, pio.Stdout)
		pio.Stderr = io.MultiWriter(os.Stderr, pio.Stderr)
		if o.Interactive {
			pio.Stdin = os.Stdin
		}
		// As docker: the local terminal is raw only when it feeds the
		// container's (-i -t); with -t alone Ctrl-C stays a signal.
		if o.TTY && o.Interactive {
			if restore, err = rawTerminal(); err != nil {
				return err
			}
			defer restore()
		}
	}
	if o.TTY {
		pio.Stderr = nil
	}
	streamCtx, stopStreams := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStreams()
	streams := s.Container(o.ID).IOStream(streamCtx, o.ID, pio)
	if !o.Create {
		if err := s.Container(o.ID).Start(ctx); err != nil {
			return startError(err)
		}
	}
	// Created, the container is vc start's to start; its failure to
	// start is that command's to report, and its record stays.
	failed, running = false, true
	if pio.Stdin == nil {
		s.Container(o.ID).CloseStdin(ctx, o.ID)
	}
	report(nil)
	// A signal to the owner, attached or detached, is the container's.
	stopSignals := forwardSignals(ctx, s, o.ID, o.TTY, o.TTY && o.Interactive)
	defer stopSignals()

	code, werr := s.Container(o.ID).Wait(context.WithoutCancel(ctx))
	select {
	case <-streams:
	case <-time.After(5 * time.Second):
	}
	att.Close()
	logOut.Flush()
	logErr.Flush()
	if restore != nil {
		restore()
	}
	s.Stop(context.WithoutCancel(ctx), 10*time.Second)
	if o.Rm {
		// Gone already if someone removed it meanwhile (vc rm -f).
		if err := s.Delete(context.WithoutCancel(ctx)); err != nil && !errdefs.IsNotFound(err) {
			fmt.Fprintf(os.Stderr, "vc run: remove %s: %v\n", o.ID, err)
		} else {
			removeAnonymousVolumes(context.WithoutCancel(ctx), g, o)
		}
	}
	if werr != nil {
		return werr
	}
	return exitError{code: int(code)}
}

// spawnOwner runs the owner in a new session (internal/spawn) and waits
// until the container runs, or is created (o.Create), or failed.
func spawnOwner(ctx context.Context, g *globals, o runOptions) error {
	if err := os.MkdirAll(g.stateRoot, 0o700); err != nil {
		return err
	}
	// A log of its own: two racing `run -d --name X` must not share one
	// (the loser would remove the winner's).
	logf, err := os.CreateTemp(g.stateRoot, "."+o.ID+".owner-*.log")
	if err != nil {
		return err
	}
	defer logf.Close()
	logPath := logf.Name()
	args := []string{"--state-root", g.stateRoot, "--data-root", g.dataRoot}
	if g.debug {
		args = append(args, "--debug")
	}
	_, err = spawn.Start(spawn.Options{
		Args:    append(args, "__run-owner"),
		Payload: o,
		Stdout:  logf,
		Stderr:  logf,
		Died:    func(*exec.Cmd) string { return ownerDied(logPath) },
	})
	if err != nil {
		os.Remove(logPath)
		return ownerError(err)
	}
	// The owner keeps writing there: keep its log with the sandbox's
	// state (removed with it), where it tells why an owner died.
	if err := os.Rename(logPath, filepath.Join(g.stateRoot, o.ID, ownerLogName)); err != nil {
		os.Remove(logPath)
	}
	return nil
}

// ownerLogName is the detached owner's log in its sandbox's state
// directory.
const ownerLogName = "owner.log"

func runOwnerCmd(ctx context.Context, g *globals, args []string) error {
	var o runOptions
	ready, err := spawn.Child(&o)
	if len(args) != 0 || err != nil {
		return errors.New("internal command; use vc run -d")
	}
	return runOwner(ctx, g, o, ready)
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ownerError is the error `vc run -d` ends with when its owner reported
// one: with the exit code the owner gave (docker's, for a container that
// could not start).
func ownerError(err error) error {
	var se *spawn.Error
	if errors.As(err, &se) && se.Code != 0 {
		return exitError{code: se.Code, err: errors.New(se.Msg)}
	}
	return err
}

// ownerDied tells why an owner exited without a report: its log.
func ownerDied(logPath string) string {
	b, _ := os.ReadFile(logPath)
	return "owner process died: " + strings.TrimSpace(string(b))
}

// startError gives a container that could not start the exit code docker
// gives it: 127 when the command does not exist, 126 when it cannot be
// invoked, 125 (vc's own) otherwise.
func startError(err error) error {
	code := 125
	switch {
	case errors.Is(err, vc.ErrCommandNotFound):
		code = 127
	case errors.Is(err, vc.ErrCommandNotRunnable):
		code = 126
	}
	return exitError{code: code, err: err}
}
