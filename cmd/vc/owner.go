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

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/spawn"
	"github.com/virtcontainers/vc/internal/tracing"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
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
	scfg, err := sandboxConfig(ctx, g, o, ccfg.Spec)
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
	if src.image != nil {
		o.ImageDigest = src.image.Digest
	}

	// The container's output goes to its log, to attached clients and,
	// attached, to the terminal; in the background with -i, its stdin is
	// what attached clients send.
	var stdinR io.Reader
	var stdinW io.WriteCloser
	if detached && o.Interactive {
		stdinR, stdinW = io.Pipe()
		defer stdinW.Close()
	}
	att := vcowner.NewAttach(nil)
	if stdinW != nil {
		att = vcowner.NewAttach(stdinW)
	}
	defer att.Close()
	var clog *containerLog
	var logOut, logErr *logStream
	defer func() {
		if clog != nil {
			logOut.Flush()
			logErr.Flush()
			clog.Close()
		}
	}()
	var restore func()
	defer func() {
		if restore != nil {
			restore()
		}
	}()
	var pio vc.IO
	connect := func(c *vc.Container) (vc.IO, error) {
		var err error
		if clog, err = openContainerLog(filepath.Join(c.Sandbox().Dir(), containerLogName)); err != nil {
			return vc.IO{}, err
		}
		logOut, logErr = clog.stream("stdout"), clog.stream("stderr")
		pio = vc.IO{Stdin: stdinR,
			Stdout: io.MultiWriter(logOut, att.Stream(1)),
			Stderr: io.MultiWriter(logErr, att.Stream(2))}
		if !detached {
			pio.Stdout = io.MultiWriter(os.Stdout, pio.Stdout)
			pio.Stderr = io.MultiWriter(os.Stderr, pio.Stderr)
			if o.Interactive {
				pio.Stdin = os.Stdin
			}
			// As docker: the local terminal is raw only when it feeds
			// the container's (-i -t); with -t alone Ctrl-C stays a
			// signal.
			if o.TTY && o.Interactive {
				if restore, err = rawTerminal(); err != nil {
					return vc.IO{}, err
				}
			}
		}
		if o.TTY {
			pio.Stderr = nil
		}
		return pio, nil
	}
	// Until the container runs, a failure removes everything. A container
	// run again gives back what it wrote to the carry directory first,
	// for vc start to put the container back as it was.
	abandon := func(s *vc.Sandbox) bool {
		if o.Carry == "" {
			return true
		}
		if err := giveBack(s.Dir(), o.Carry); err != nil {
			slog.Error("run again failed: the container's files stay in its sandbox", "id", o.ID, "err", err)
			return false
		}
		return true
	}
	prepare := func(ctx context.Context, s *vc.Sandbox, ccfg *vc.ContainerConfig) error {
		// Its record saved, vc volume rm sees the container's volumes.
		release := func() { releaseVolumes(); releaseVolumes = func() {} }
		return prepareContainer(g, s, &o, ccfg, src, release)
	}
	own, err := vcowner.Create(ctx, vcowner.Config{
		BootConfig: vcowner.BootConfig{Sandbox: scfg, Container: ccfg, Prepare: prepare, Abandon: abandon},
		IO:         connect,
		Control:    controlSocket,
		Attach:     att,
		// vc start starts a created container through the library.
		StartedElsewhere: true,
	})
	if err != nil {
		return ownerStartError(err)
	}
	if !o.Create {
		if err := own.Start(ctx); err != nil {
			own.Abandon(ctx)
			return ownerStartError(err)
		}
	}
	// Created, the container is vc start's to start; its failure to
	// start is that command's to report, and its record stays.
	running = true
	s := own.Sandbox()
	if pio.Stdin == nil {
		s.Container(o.ID).CloseStdin(ctx, o.ID)
	}
	report(nil)
	// A signal to the owner, attached or detached, is the container's.
	stopSignals := forwardSignals(ctx, s, o.ID, o.TTY, o.TTY && o.Interactive)
	defer stopSignals()

	code, werr := own.Wait(ctx)
	att.Close()
	logOut.Flush()
	logErr.Flush()
	if restore != nil {
		restore()
		restore = nil
	}
	own.Shutdown(ctx, false)
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
	return exitError{code: code}
}

// containerLogName is the container's log in its sandbox's directory.
const containerLogName = "container.log"

// controlSocket is the owner's control socket (pkg/vc/owner) in the
// sandbox's state directory: vc attach attaches there.
const controlSocket = "control.sock"

// prepareContainer readies, in the booted sandbox s, what the container
// needs before it is created: its record (the volumes' reservation
// released once it is saved), what a run again carries in, its log, its
// writable layer, volumes' first content, /etc files and its names on its
// user network.
func prepareContainer(g *globals, s *vc.Sandbox, o *runOptions, ccfg *vc.ContainerConfig, src imageSource, releaseVolumes func()) error {
	if err := saveOptions(s.Dir(), *o); err != nil {
		return err
	}
	releaseVolumes()
	if o.Carry != "" {
		if err := carryIn(o.Carry, s.Dir()); err != nil {
			return err
		}
	}
	ccfg.LogPath = filepath.Join(s.Dir(), containerLogName)
	if o.Rootfs == "" {
		// An image: the container writes into a layer of its own. A
		// --rootfs directory is the user's, written as runc writes a
		// bundle's.
		var err error
		if ccfg.Rootfs, err = mountRootfs(s.Dir(), src); err != nil {
			return err
		}
	}
	if err := copyUpVolumes(g, *o, ccfg.Rootfs); err != nil {
		return err
	}
	// As docker: /etc/hosts, /etc/hostname and, behind the NAT, the
	// NAT's resolver, unless -v binds files of the user's there.
	if err := s.BindEtcFiles(ccfg); err != nil {
		return err
	}
	if o.Network != "" {
		if err := publishNames(g, s, *o); err != nil {
			return err
		}
	}
	return nil
}

// ownerStartError is the error of an owner that could not create or
// start its container: docker's exit code for a failure of the container
// itself.
func ownerStartError(err error) error {
	var ce *vcowner.ContainerError
	if errors.As(err, &ce) {
		return startError(ce.Err)
	}
	return err
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
	// The owner's spans are children of this vc run's.
	for _, kv := range tracing.Environ(ctx) {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
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
