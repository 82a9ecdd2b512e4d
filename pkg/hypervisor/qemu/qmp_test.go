package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeQMP is a QMP server on a unix socket: it greets, negotiates
// capabilities, then answers commands with the handler registered for
// their name. Handlers run on the server's goroutine, in order.
type fakeQMP struct {
	t    *testing.T
	path string
	ln   *net.UnixListener

	mu       sync.Mutex
	handlers map[string]fakeHandler
	conn     *net.UnixConn
	seen     []string
	greeting string
}

// fakeHandler answers one command. It writes its reply (or nothing) with
// s.reply / s.replyError / s.event; fds holds descriptors that came with
// the command.
type fakeHandler func(s *fakeQMP, id json.RawMessage, args json.RawMessage, fds []int)

func newFakeQMP(t *testing.T) *fakeQMP {
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
	s := &fakeQMP{
		t: t, path: path, ln: ln,
		handlers: map[string]fakeHandler{},
		greeting: `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}`,
	}
	s.handle("qmp_capabilities", func(s *fakeQMP, id, _ json.RawMessage, _ []int) { s.reply(id, struct{}{}) })
	go s.serve()
	t.Cleanup(func() { ln.Close(); s.hangup() })
	return s
}

func (s *fakeQMP) handle(cmd string, h fakeHandler) {
	s.mu.Lock()
	s.handlers[cmd] = h
	s.mu.Unlock()
}

func (s *fakeQMP) setGreeting(g string) {
	s.mu.Lock()
	s.greeting = g
	s.mu.Unlock()
}

func (s *fakeQMP) serve() {
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
	s.send(greeting)
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
				s.replyError(cmd.ID, "CommandNotFound", fmt.Sprintf("The command %s has not been found", cmd.Execute))
				continue
			}
			h(s, cmd.ID, cmd.Arguments, fds)
			fds = nil
		}
	}
}

func (s *fakeQMP) send(line string) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Write([]byte(line + "\r\n"))
	}
}

func (s *fakeQMP) reply(id json.RawMessage, ret any) {
	b, _ := json.Marshal(map[string]any{"return": ret, "id": id})
	s.send(string(b))
}

func (s *fakeQMP) replyError(id json.RawMessage, class, desc string) {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"class": class, "desc": desc}, "id": id})
	s.send(string(b))
}

func (s *fakeQMP) event(name string, data any) {
	b, _ := json.Marshal(map[string]any{
		"event": name, "data": data,
		"timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 250000},
	})
	s.send(string(b))
}

func (s *fakeQMP) hangup() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (s *fakeQMP) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func dialFake(t *testing.T, s *fakeQMP) *QMP {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, s.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestQMPExecute(t *testing.T) {
	s := newFakeQMP(t)
	s.handle("query-status", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {
		s.reply(id, map[string]any{"running": true, "singlestep": false, "status": "running"})
	})
	q := dialFake(t, s)
	if q.Version.String() != "7.2.22" || q.Version.Package != "Debian 1:7.2+dfsg-7" {
		t.Errorf("version %+v", q.Version)
	}
	st, err := q.QueryStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Status != "running" {
		t.Errorf("status %+v", st)
	}
	if got := strings.Join(s.commands(), ","); got != "qmp_capabilities,query-status" {
		t.Errorf("server saw %s", got)
	}
}

func TestQMPErrorReply(t *testing.T) {
	s := newFakeQMP(t)
	s.handle("device_del", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {
		s.replyError(id, "GenericError", "Device 'nic9' not found")
	})
	q := dialFake(t, s)
	err := q.DeviceDel(context.Background(), "nic9")
	if err == nil || !strings.Contains(err.Error(), "Device 'nic9' not found") || !strings.Contains(err.Error(), "device_del") {
		t.Fatalf("got %v, want the QMP desc and command", err)
	}
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Fatalf("got %#v, want a *QMPError of class GenericError", err)
	}
	// An unknown command is an error of another class.
	err = q.Execute(context.Background(), "no-such-thing", nil, nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("got %v", err)
	}
}

func TestQMPEvents(t *testing.T) {
	s := newFakeQMP(t)
	s.handle("stop", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {
		s.event("STOP", map[string]any{})
		s.reply(id, struct{}{})
	})
	q := dialFake(t, s)
	if err := q.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-q.Events():
		if ev.Name != "STOP" || ev.Timestamp.Unix() != 1700000000 || ev.Timestamp.Nanosecond() != 250000000 {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no STOP event")
	}
}

func TestQMPDeviceDelWaitsForEvent(t *testing.T) {
	s := newFakeQMP(t)
	release := make(chan struct{})
	s.handle("device_del", func(s *fakeQMP, id, args json.RawMessage, _ []int) {
		var a struct{ ID string }
		json.Unmarshal(args, &a)
		s.reply(id, struct{}{})
		go func() {
			// Another device goes first: it must not satisfy the waiter.
			s.event("DEVICE_DELETED", map[string]string{"device": "other", "path": "/machine/peripheral/other"})
			<-release
			s.event("DEVICE_DELETED", map[string]string{"device": a.ID, "path": "/machine/peripheral/" + a.ID})
		}()
	})
	q := dialFake(t, s)
	done := make(chan error, 1)
	go func() { done <- q.DeviceDel(context.Background(), "disk1") }()
	select {
	case err := <-done:
		t.Fatalf("DeviceDel returned before DEVICE_DELETED for its device: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("DeviceDel did not return after DEVICE_DELETED")
	}
}

func TestQMPContextCancel(t *testing.T) {
	s := newFakeQMP(t)
	late := make(chan json.RawMessage, 1)
	s.handle("slow", func(s *fakeQMP, id, _ json.RawMessage, _ []int) { late <- id })
	s.handle("fast", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {
		// The reply to the abandoned command arrives first: it must be
		// dropped, not taken for this one.
		s.reply(<-late, "stale")
		s.reply(id, "fresh")
	})
	q := dialFake(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := q.Execute(ctx, "slow", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancellation took %s", d)
	}
	var got string
	if err := q.Execute(context.Background(), "fast", nil, &got); err != nil || got != "fresh" {
		t.Fatalf("after a cancelled command: %q, %v", got, err)
	}
	// A context already done sends nothing.
	n := len(s.commands())
	if err := q.Execute(ctx, "fast", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if len(s.commands()) != n {
		t.Fatalf("a command with a done context was sent")
	}
}

func TestQMPHangup(t *testing.T) {
	s := newFakeQMP(t)
	s.handle("quit", func(s *fakeQMP, id, _ json.RawMessage, _ []int) { s.hangup() })
	s.handle("hang", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {})
	q := dialFake(t, s)

	pending := make(chan error, 1)
	go func() { pending <- q.Execute(context.Background(), "hang", nil, nil) }()
	time.Sleep(50 * time.Millisecond)
	// quit closes the connection without a reply: still a success.
	if err := q.Quit(context.Background()); err != nil {
		t.Fatalf("quit: %v", err)
	}
	select {
	case err := <-pending:
		if !errors.Is(err, ErrQMPClosed) {
			t.Fatalf("pending command: %v, want ErrQMPClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending command not failed on hangup")
	}
	select {
	case <-q.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if _, ok := <-q.Events(); ok {
		t.Fatal("Events not closed")
	}
	if err := q.Execute(context.Background(), "query-status", nil, nil); !errors.Is(err, ErrQMPClosed) {
		t.Fatalf("command after hangup: %v", err)
	}
	w := q.Subscribe(EventNamed("SHUTDOWN"))
	defer w.Cancel()
	if _, err := w.Wait(context.Background()); !errors.Is(err, ErrQMPClosed) {
		t.Fatalf("wait after hangup: %v", err)
	}
}

func TestQMPConcurrent(t *testing.T) {
	s := newFakeQMP(t)
	// Replies come in reverse order of a batch of 10.
	var batch []struct {
		id  json.RawMessage
		arg json.RawMessage
	}
	s.handle("echo", func(s *fakeQMP, id, args json.RawMessage, _ []int) {
		batch = append(batch, struct {
			id  json.RawMessage
			arg json.RawMessage
		}{id, args})
		if len(batch) == 10 {
			for i := len(batch) - 1; i >= 0; i-- {
				s.reply(batch[i].id, batch[i].arg)
			}
			batch = nil
		}
	})
	q := dialFake(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var got map[string]int
			if err := q.Execute(context.Background(), "echo", map[string]int{"n": i}, &got); err != nil {
				errs <- err
				return
			}
			if got["n"] != i {
				errs <- fmt.Errorf("command %d got the reply of %d", i, got["n"])
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestQMPGetFD(t *testing.T) {
	s := newFakeQMP(t)
	got := make(chan []int, 1)
	s.handle("getfd", func(s *fakeQMP, id, args json.RawMessage, fds []int) {
		got <- fds
		s.reply(id, struct{}{})
	})
	q := dialFake(t, s)
	f, err := os.CreateTemp(t.TempDir(), "tap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := q.GetFD(context.Background(), "fd-nic0", f); err != nil {
		t.Fatal(err)
	}
	fds := <-got
	if len(fds) != 1 {
		t.Fatalf("server got %d descriptors", len(fds))
	}
	defer unix.Close(fds[0])
	var a, b unix.Stat_t
	unix.Fstat(int(f.Fd()), &a)
	unix.Fstat(fds[0], &b)
	if a.Ino != b.Ino || a.Dev != b.Dev {
		t.Fatal("the descriptor received is not the file sent")
	}
}

func TestQMPHandshakeFailures(t *testing.T) {
	t.Run("no greeting", func(t *testing.T) {
		s := newFakeQMP(t)
		s.setGreeting("")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := DialQMP(ctx, s.path, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not qmp", func(t *testing.T) {
		s := newFakeQMP(t)
		s.setGreeting(`{"hello": "world"}`)
		_, err := DialQMP(context.Background(), s.path, nil)
		if err == nil || !strings.Contains(err.Error(), "QMP banner") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("capabilities refused", func(t *testing.T) {
		s := newFakeQMP(t)
		s.handle("qmp_capabilities", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {
			s.replyError(id, "CommandNotFound", "Capabilities negotiation is already complete")
		})
		_, err := DialQMP(context.Background(), s.path, nil)
		if err == nil || !strings.Contains(err.Error(), "already complete") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no socket", func(t *testing.T) {
		_, err := DialQMP(context.Background(), filepath.Join(t.TempDir(), "none.sock"), nil)
		if !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestQMPQueryPCIFlattensBridges(t *testing.T) {
	s := newFakeQMP(t)
	s.handle("query-pci", func(s *fakeQMP, id, _ json.RawMessage, _ []int) {
		s.send(`{"return": [{"bus": 0, "devices": [{"bus": 0, "slot": 1, "function": 0, "qdev_id": "rng0"},` +
			`{"bus": 0, "slot": 2, "function": 0, "qdev_id": "rp0", "pci_bridge": {"devices": [{"bus": 1, "slot": 0, "function": 0, "qdev_id": "disk1"}]}}]}], "id": ` + string(id) + `}`)
	})
	q := dialFake(t, s)
	devs, err := q.QueryPCI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range devs {
		ids = append(ids, fmt.Sprintf("%s@%d:%d", d.QDevID, d.Bus, d.Slot))
	}
	if got := strings.Join(ids, " "); got != "rng0@0:1 rp0@0:2 disk1@1:0" {
		t.Fatalf("got %s", got)
	}
}
