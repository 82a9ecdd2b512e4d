// Package qmptest is a fake QMP server for tests of QMP clients.
package qmptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Server is a fake QMP server on a unix socket: it greets, negotiates
// capabilities, then answers commands with the handler registered for
// their name. Handlers run on the server's goroutine, in order.
type Server struct {
	t    testing.TB
	path string
	ln   *net.UnixListener

	mu       sync.Mutex
	handlers map[string]Handler
	conn     *net.UnixConn
	seen     []string
	greeting string
}

// Handler answers one command. It writes its reply (or nothing) with
// s.reply / s.replyError / s.event; fds holds descriptors that came with
// the command.
type Handler func(s *Server, id json.RawMessage, args json.RawMessage, fds []int)

// New starts a Server; it stops with the test.
func New(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		t: t, path: path, ln: ln,
		handlers: map[string]Handler{},
		greeting: `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}`,
	}
	s.Handle("qmp_capabilities", func(s *Server, id, _ json.RawMessage, _ []int) { s.Reply(id, struct{}{}) })
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.Hangup() })
	return s
}

// Handle makes h answer cmd.
func (s *Server) Handle(cmd string, h Handler) {
	s.mu.Lock()
	s.handlers[cmd] = h
	s.mu.Unlock()
}

// SetGreeting replaces the greeting ("" for a server that never greets).
func (s *Server) SetGreeting(g string) {
	s.mu.Lock()
	s.greeting = g
	s.mu.Unlock()
}

func (s *Server) serve() {
	c, err := s.ln.AcceptUnix()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.conn = c
	greeting := s.greeting
	s.mu.Unlock()
	if greeting == "" {
		return // a server that never greets
	}
	s.Send(greeting)
	var pending []byte
	var fds []int
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*8))
	for {
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		if oobn > 0 {
			msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				r, _ := unix.ParseUnixRights(&m)
				fds = append(fds, r...)
			}
		}
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			line := pending[:i]
			pending = pending[i+1:]
			var cmd struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
				ID        json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(line, &cmd); err != nil {
				s.t.Errorf("fake qmp: bad command %q: %v", line, err)
				return
			}
			s.mu.Lock()
			s.seen = append(s.seen, cmd.Execute)
			h := s.handlers[cmd.Execute]
			s.mu.Unlock()
			if h == nil {
				s.ReplyError(cmd.ID, "CommandNotFound", fmt.Sprintf("The command %s has not been found", cmd.Execute))
				continue
			}
			h(s, cmd.ID, cmd.Arguments, fds)
			fds = nil
		}
	}
}

// Send writes a line to the client.
func (s *Server) Send(line string) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Write([]byte(line + "\r\n"))
	}
}

// Reply answers command id with ret.
func (s *Server) Reply(id json.RawMessage, ret any) {
	b, _ := json.Marshal(map[string]any{"return": ret, "id": id})
	s.Send(string(b))
}

// ReplyError answers command id with an error.
func (s *Server) ReplyError(id json.RawMessage, class, desc string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"class": class, "desc": desc}, "id": id})
	s.Send(string(b))
}

// Event sends an event.
func (s *Server) Event(name string, data any) {
	b, _ := json.Marshal(map[string]any{
		"event": name, "data": data,
		"timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 250000},
	})
	s.Send(string(b))
}

// Hangup closes the connection.
func (s *Server) Hangup() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Commands are the commands received, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Path is the server's socket.
func (s *Server) Path() string { return s.path }
