// Package owner runs a container's life for a front end (vc, vc-runtime):
// the process that owns a container keeps its VM, serves a control
// socket, and tears the VM down when the container is done.
//
// Two layers. Boot and Process are what every front end shares: Boot
// boots a VM with its first container (undone on error), Process runs one
// process of a container in the guest (its streams copied from the start,
// its exit waited for, its output drained bounded by progress). Owner
// builds on them for one container in a VM of its own: runc's statuses
// (created, running, paused, stopped), a kill before start, the signals
// of the owner process, the control socket. The containerd shim
// (internal/shim) uses Boot and Process but not Owner: its task service
// keeps many containers and their exec'd processes in one VM, has
// containerd's statuses and events (TaskExit after TaskStart, a
// container's exec'd processes' exits before its init's, TaskOOM before
// the exit), containerd's FIFOs and logging binaries for IO and no
// control socket, so it maps each task request onto Process itself.
//
// The control protocol is one JSON Request per connection, answered by
// one JSON Reply. Ops every owner knows: start, kill, pause, resume,
// resize, state and attach; a front end may add its own (vc-runtime's
// create and remove of a pod's other containers). After the reply to
// attach the connection carries the container's output, multiplexed as
// docker's attach does (an 8-byte header: the stream, 1 or 2, three zero
// bytes, the length as a big-endian uint32; then the bytes), and what the
// client writes is the container's standard input when it is open to
// attachments.
package owner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// The control ops every owner knows.
const (
	OpStart  = "start"
	OpKill   = "kill"
	OpPause  = "pause"
	OpResume = "resume"
	OpResize = "resize"
	OpState  = "state"
	OpAttach = "attach"
)

// Request is a control request.
type Request struct {
	Op string `json:"op"`
	// Signal and All are kill's: the signal, and whether every process
	// of the container gets it.
	Signal int  `json:"signal,omitempty"`
	All    bool `json:"all,omitempty"`
	// Height and Width are resize's: the terminal's size.
	Height uint32 `json:"height,omitempty"`
	Width  uint32 `json:"width,omitempty"`
	// Container is the container the request is for when it is not the
	// owner's own (a pod's other container in the VM the owner keeps).
	Container string `json:"container,omitempty"`
}

// Reply answers a Request.
type Reply struct {
	Error string `json:"error,omitempty"`
	// State is state's answer.
	State *State `json:"state,omitempty"`
}

// State is what an owner tells of its container.
type State struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// ExitStatus and Exited are the container's exit, once it stopped
	// after its owner waited for it.
	ExitStatus int       `json:"exit_status,omitempty"`
	Exited     time.Time `json:"exited,omitzero"`
}

// Handler answers a control request. The state it returns is sent with
// the reply (state's answer; nil for the other ops).
type Handler func(ctx context.Context, req Request) (*State, error)

// Server serves an owner's control socket.
type Server struct {
	l      net.Listener
	path   string
	handle Handler
	attach *Attach
}

// Listen serves the control socket at path with handle; attach, if not
// nil, serves attach requests. A stale socket at path is replaced. Only
// the socket's owner (root) may connect: it carries the container's
// input.
func Listen(path string, handle Handler, attach *Attach) (*Server, error) {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{l: l, path: path, handle: handle, attach: attach}
	go s.serve()
	return s, nil
}

// Close stops serving and removes the socket. Requests in progress
// finish.
func (s *Server) Close() {
	if s == nil {
		return
	}
	s.l.Close()
	os.Remove(s.path)
}

func (s *Server) serve() {
	for {
		conn, err := s.l.Accept()
		if err != nil {
			return
		}
		go s.serveConn(conn)
	}
}

func (s *Server) serveConn(conn net.Conn) {
	var req Request
	if err := json.NewDecoder(byteReader{conn}).Decode(&req); err != nil {
		conn.Close()
		return
	}
	if req.Op == OpAttach && req.Container == "" {
		if s.attach == nil {
			send(conn, Reply{Error: "attach: not served by this owner"})
			conn.Close()
			return
		}
		if err := send(conn, Reply{}); err != nil {
			conn.Close()
			return
		}
		// The attachment owns conn now.
		s.attach.add(conn)
		return
	}
	defer conn.Close()
	var rep Reply
	st, err := s.handle(context.Background(), req)
	if err != nil {
		rep.Error = err.Error()
	}
	rep.State = st
	send(conn, rep)
}

// send writes v as JSON, without Encode's newline: after an attach
// request and its reply the connection is the stream, nothing between.
func send(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ErrNoOwner is returned when the control socket does not answer: the
// owner is gone.
var ErrNoOwner = errors.New("owner process")

// Call sends req to the owner serving path and returns its reply; an
// error the owner answered is returned as is (its message is the
// front end's, runc's for vc-runtime).
func Call(path string, req Request) (Reply, error) {
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %w", ErrNoOwner, err)
	}
	defer conn.Close()
	rep, err := roundTrip(conn, req)
	if err != nil {
		return rep, err
	}
	if rep.Error != "" {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

func roundTrip(conn net.Conn, req Request) (Reply, error) {
	var rep Reply
	if err := send(conn, req); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrNoOwner, err)
	}
	// One reply, read byte by byte: after attach's the connection is the
	// stream, which a buffered reader would eat into.
	if err := json.NewDecoder(byteReader{conn}).Decode(&rep); err != nil {
		return rep, fmt.Errorf("%w: no answer to %s: %w", ErrNoOwner, req.Op, err)
	}
	return rep, nil
}

// byteReader reads one byte at a time, so that a decoder on it reads no
// further than the value's closing brace: what follows (an attachment's
// stream) stays in the connection.
type byteReader struct{ r io.Reader }

func (b byteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return b.r.Read(p)
}

// Dial attaches to the owner serving path: the connection then carries
// the container's multiplexed output (Demux reads it) and takes its
// input.
func Dial(path string) (net.Conn, error) {
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoOwner, err)
	}
	rep, err := roundTrip(conn, Request{Op: OpAttach})
	if err == nil && rep.Error != "" {
		err = errors.New(rep.Error)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}
