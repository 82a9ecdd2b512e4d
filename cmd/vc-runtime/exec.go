package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/spawn"
	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

func init() {
	register("exec", command{
		usage: "[--process FILE] [--tty] [--detach] [--console-socket PATH] [--pid-file PATH] [-e K=V] [--cwd DIR] [--user UID[:GID]] ID [COMMAND [ARGS...]]",
		short: "run a new process in a running container",
		run:   execCmd,
	})
	register("__exec", command{run: execOwnerCmd})
}

// execOptions is what the process that keeps an exec'd process (this one,
// or a detached one) needs.
type execOptions struct {
	ID            string         `json:"id"`
	ExecID        string         `json:"exec_id"`
	Process       *specs.Process `json:"process"`
	ConsoleSocket string         `json:"console_socket,omitempty"`
	// VMDir is the state root of the container's VM's sandbox.
	VMDir string `json:"vm_dir"`
}

func execCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("exec")
	var envs listFlag
	var processFile, consoleSocket, pidFile, cwd, user string
	var tty, detach bool
	fs.StringVar(&processFile, "process", "", "path to the process.json")
	fs.StringVar(&processFile, "p", "", "path to the process.json")
	fs.BoolVar(&tty, "tty", false, "allocate a pseudo-TTY")
	fs.BoolVar(&tty, "t", false, "allocate a pseudo-TTY")
	fs.BoolVar(&detach, "detach", false, "detach from the container's process")
	fs.BoolVar(&detach, "d", false, "detach from the container's process")
	fs.StringVar(&consoleSocket, "console-socket", "", "path to an AF_UNIX socket which will receive a file descriptor referencing the master end of the console's pseudoterminal")
	fs.StringVar(&pidFile, "pid-file", "", "specify the file to write the process id to (the process keeping the exec'd one, which exits with it)")
	fs.Var(&envs, "env", "set environment variables")
	fs.Var(&envs, "e", "set environment variables")
	fs.StringVar(&cwd, "cwd", "", "current working directory in the container")
	fs.StringVar(&user, "user", "", "UID (format: <uid>[:<gid>])")
	fs.StringVar(&user, "u", "", "UID (format: <uid>[:<gid>])")
	var ignoredS string
	var ignoredB bool
	var ignoredI int
	fs.StringVar(&ignoredS, "process-label", "", "accepted; no SELinux in the VM")
	fs.StringVar(&ignoredS, "apparmor", "", "accepted; no AppArmor in the VM")
	fs.BoolVar(&ignoredB, "no-new-privs", false, "accepted; see the process's noNewPrivileges")
	fs.IntVar(&ignoredI, "preserve-fds", 0, "accepted; extra file descriptors are not passed into the VM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("%q requires a minimum of 1 argument", "exec")
	}
	id := fs.Arg(0)
	st, err := loadState(g.root, id)
	if err != nil {
		return err
	}
	switch s := st.status(); s {
	case statusRunning:
	case statusPaused:
		return errors.New("cannot exec in a paused container")
	case statusStopped:
		return errors.New("cannot exec in a stopped container")
	default:
		return fmt.Errorf("cannot exec in a container that is %s", s)
	}
	var p *specs.Process
	if processFile != "" {
		if p, err = loadProcess(processFile); err != nil {
			return err
		}
	} else {
		if fs.NArg() < 2 {
			return errors.New("exec args cannot be empty")
		}
		spec, err := loadSpec(st.Bundle)
		if err != nil {
			return err
		}
		if p, err = execProcess(spec.Process, fs.Args()[1:], envs, cwd, user, tty); err != nil {
			return err
		}
	}
	if p.Terminal && detach && consoleSocket == "" {
		return errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !p.Terminal && consoleSocket != "" {
		return errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	if consoleSocket != "" {
		// A detached exec dials it from /.
		if consoleSocket, err = filepath.Abs(consoleSocket); err != nil {
			return err
		}
	}
	eo := execOptions{ID: id, ExecID: "exec-" + randomID(), Process: p, ConsoleSocket: consoleSocket, VMDir: st.vmDir(g.root)}
	if !detach {
		if pidFile != "" {
			if err := writePidFile(pidFile, os.Getpid()); err != nil {
				return err
			}
		}
		return runExec(ctx, g, eo, nil)
	}
	cmd, err := startExecOwner(g, eo)
	if err != nil {
		return err
	}
	if pidFile != "" {
		if err := writePidFile(pidFile, cmd.Process.Pid); err != nil {
			cmd.Process.Signal(unix.SIGKILL)
			return err
		}
	}
	return nil
}

// execProcess is the container's process with args and the exec flags.
func execProcess(base *specs.Process, args, env []string, cwd, user string, tty bool) (*specs.Process, error) {
	p := *base
	p.Args = args
	p.Terminal = tty
	p.ConsoleSize = nil
	p.Env = append(append([]string(nil), base.Env...), env...)
	if cwd != "" {
		p.Cwd = cwd
	}
	if user != "" {
		uid, gid, hasGID := strings.Cut(user, ":")
		u, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("parsing %s as int for uid failed: %w", uid, err)
		}
		p.User = specs.User{UID: uint32(u)}
		if hasGID {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parsing %s as int for gid failed: %w", gid, err)
			}
			p.User.GID = uint32(g)
		}
	}
	return &p, nil
}

// loadProcess reads runc's --process file.
func loadProcess(path string) (*specs.Process, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("--process %s: %w", path, err)
	}
	if len(p.Args) == 0 {
		return nil, errors.New("args must not be empty")
	}
	return &p, nil
}

// startExecOwner starts a detached process that keeps the exec'd process
// and exits with its status, and waits until the process runs.
func startExecOwner(g *globals, eo execOptions) (*exec.Cmd, error) {
	return startChild(g, "__exec", eo, eo.ConsoleSocket == "", func(cmd *exec.Cmd) string {
		return "exec process died: " + cmd.ProcessState.String()
	})
}

func execOwnerCmd(ctx context.Context, g *globals, args []string) error {
	var eo execOptions
	ready, err := spawn.Child(&eo)
	if len(args) != 0 || err != nil {
		return errors.New("internal command of vc-runtime exec")
	}
	if g.logFile == nil {
		// Its stderr is the process's: log beside the owner's log.
		f, err := os.OpenFile(filepath.Join(containerDir(g.root, eo.ID), ownerLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			ready.Report(fmt.Errorf("log: %w", err))
			return exitError{1}
		}
		g.logFile = f
		h, _ := logHandler(f, g.logFormat, g.debug)
		g.log = slog.New(h)
	}
	slog.SetDefault(g.log.With("container", eo.ID, "exec", eo.ExecID))
	if err := os.Chdir("/"); err != nil {
		ready.Report(err)
		return exitError{1}
	}
	return runExec(ctx, g, eo, ready)
}

// runExec runs the process in the container with this process's streams
// (or a terminal sent to the console socket), reports on ready (if any)
// once it runs, and returns its exit status as an exitError.
func runExec(ctx context.Context, g *globals, eo execOptions, ready *spawn.Ready) (err error) {
	defer func() {
		if ready != nil {
			ready.Report(err)
			if err != nil {
				err = exitError{1}
			}
		}
	}()
	s, err := vc.FetchSandbox(ctx, eo.VMDir, sandboxID)
	if err != nil {
		return fmt.Errorf("container %s: %w", eo.ID, err)
	}
	defer s.Close()
	c := s.Container(eo.ID)
	pio := vc.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	var tty *os.File
	if eo.Process.Terminal {
		pio.Stderr = nil
		if eo.ConsoleSocket != "" {
			if tty, err = sendConsole(eo.ConsoleSocket, eo.Process.ConsoleSize); err != nil {
				return err
			}
			defer tty.Close()
			pio.Stdin, pio.Stdout = tty, hostTTY{tty}
		}
	}
	if err := c.Exec(ctx, eo.ExecID, eo.Process); err != nil {
		return err
	}
	proc := vcowner.StartProcess(ctx, c, eo.ExecID, pio, nil)
	defer proc.Close()
	ready.Report(nil)
	ready = nil
	// Signals to this process are the exec'd process's.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			c.SignalProcess(context.WithoutCancel(ctx), eo.ExecID, uint32(sig.(unix.Signal)))
		}
	}()
	code, err := proc.Wait(context.WithoutCancel(ctx), nil)
	if err != nil {
		return err
	}
	proc.Drain(vcowner.OutputEndTimeout)
	return exitError{int(code)}
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
