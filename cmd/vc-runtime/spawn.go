package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// spawn starts this program's internal command sub (the owner of a
// container, or of an exec'd process) in a session of its own, with
// payload as JSON on its fd 4 (an argument would be capped at 128 KiB)
// and a readiness pipe on its fd 3; with stdio it gets this process's
// standard streams. It returns once the child reported: nil when it said
// "ok", else the error it reported, or died with (it has exited then).
// died describes a child that reported nothing.
func spawn(g *globals, sub string, payload any, stdio bool, died func(*exec.Cmd) string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		w.Close()
		return nil, err
	}
	args := []string{"--root", g.root, "--log-format", g.logFormat, "--data-root", g.dataRoot, "--accel", g.accel}
	if g.logPath != "" {
		args = append(args, "--log", g.logPath)
	}
	if g.factory != "" {
		args = append(args, "--factory", g.factory)
	}
	if g.debug {
		args = append(args, "--debug")
	}
	cmd := exec.Command(self, append(args, sub)...)
	if stdio {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	}
	cmd.ExtraFiles = []*os.File{w, pr}
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("%s process: %w", sub, err)
	}
	go func() {
		pw.Write(b)
		pw.Close()
	}()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		return cmd, nil
	}
	cmd.Wait()
	if line == "" {
		line = died(cmd)
	}
	return nil, errors.New(strings.TrimPrefix(line, "error: "))
}

// spawned is the child's side of spawn: it reads the payload from fd 4
// into v and returns the readiness pipe (fd 3). Neither leaks into what
// the child starts.
func spawned(v any) (*os.File, error) {
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	in := os.NewFile(4, "payload")
	err := json.NewDecoder(in).Decode(v)
	in.Close()
	if err != nil {
		return nil, err
	}
	return os.NewFile(3, "ready"), nil
}
