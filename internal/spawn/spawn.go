// Package spawn is the one way vc's programs start a detached helper
// process (a container's owner, an exec'd process's keeper) and learn
// that it is ready.
//
// The parent re-executes its own binary with the arguments it gives, in a
// session of its own. The payload goes as JSON on the child's fd 4 (an
// argument would be capped at 128 KiB, MAX_ARG_STRLEN); the child answers
// one line on its fd 3, the readiness pipe, and closes it:
//
//	ok
//	error: MESSAGE
//	error CODE: MESSAGE
//
// CODE is the exit code the parent should end with (docker's 125, 126, 127
// for a container that could not start); the parent gets it as an *Error.
// A pipe closed with no line means the child died first.
package spawn

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The child's descriptors: the readiness pipe and the payload.
const (
	readyFD   = 3
	payloadFD = 4
)

// Error is a failure the child reported. Code is the exit code it asked
// for, 0 when it gave none.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// ExitCode is Code, for callers that map errors to exit codes.
func (e *Error) ExitCode() int { return e.Code }

// Coder is an error that carries an exit code for Ready.Report to send.
type Coder interface {
	error
	ExitCode() int
}

// Options are a child's start.
type Options struct {
	// Args are the arguments the binary is run with (the internal
	// command and the global flags it needs).
	Args []string
	// Payload is sent as JSON on the child's fd 4.
	Payload any
	// Stdin, Stdout and Stderr are the child's (nil: /dev/null).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Died describes a child that exited without reporting (its log's
	// last words); nil: its exit status.
	Died func(*exec.Cmd) string
}

// Start starts the child and waits for its report. It returns the running
// child once the child said ok; otherwise the child has exited and the
// error is the *Error it reported, or why it died.
func Start(o Options) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(o.Payload)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
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
	cmd := exec.Command(self, o.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.ExtraFiles = []*os.File{w, pr} // fd 3, fd 4
	cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(o.Args, " "), err)
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
		msg := "exited: " + cmd.ProcessState.String()
		if o.Died != nil {
			msg = o.Died(cmd)
		}
		return nil, &Error{Msg: msg}
	}
	return nil, ParseReport(line)
}

// ParseReport reads a child's error line ("error: MSG" or "error CODE:
// MSG").
func ParseReport(line string) *Error {
	rest, ok := strings.CutPrefix(line, "error")
	if !ok {
		return &Error{Msg: "unexpected report: " + line}
	}
	head, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return &Error{Msg: strings.TrimPrefix(strings.TrimSpace(rest), ":")}
	}
	head = strings.TrimSpace(head)
	if head == "" {
		return &Error{Msg: msg}
	}
	code, err := strconv.Atoi(head)
	if err != nil {
		return &Error{Msg: strings.TrimSpace(rest)}
	}
	return &Error{Code: code, Msg: msg}
}

// Ready is the child's readiness pipe.
type Ready struct {
	w io.WriteCloser
}

// Child is the child's side of Start: it reads the payload into v and
// returns the readiness pipe. Neither descriptor leaks into what the
// child starts.
func Child(v any) (*Ready, error) {
	unix.CloseOnExec(readyFD)
	unix.CloseOnExec(payloadFD)
	in := os.NewFile(payloadFD, "payload")
	if in == nil {
		return nil, errors.New("spawn: no payload descriptor")
	}
	err := json.NewDecoder(in).Decode(v)
	in.Close()
	if err != nil {
		return nil, fmt.Errorf("spawn: payload: %w", err)
	}
	return &Ready{w: os.NewFile(readyFD, "ready")}, nil
}

// NewReady makes a readiness pipe of w (tests, and an in-process owner).
func NewReady(w io.WriteCloser) *Ready {
	if w == nil {
		return nil
	}
	return &Ready{w: w}
}

// Report tells the parent the outcome, once: ok for a nil err, else the
// error (with its code if it is a Coder). Later calls, and calls on a nil
// Ready, do nothing.
func (r *Ready) Report(err error) {
	if r == nil || r.w == nil {
		return
	}
	fmt.Fprint(r.w, Line(err))
	r.w.Close()
	r.w = nil
}

// Line is the report line of err, with its newline.
func Line(err error) string {
	if err == nil {
		return "ok\n"
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	var c Coder
	if errors.As(err, &c) && c.ExitCode() != 0 {
		return fmt.Sprintf("error %d: %s\n", c.ExitCode(), msg)
	}
	return "error: " + msg + "\n"
}
