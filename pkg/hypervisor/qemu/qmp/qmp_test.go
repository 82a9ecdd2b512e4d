package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp/qmptest"
)

func dialFake(t *testing.T, s *qmptest.Server) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := Dial(ctx, s.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestQMPExecute(t *testing.T) {
	s := qmptest.New(t)
	s.Handle("query-status", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Reply(id, map[string]any{"running": true, "singlestep": false, "status": "running"})
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
	if got := strings.Join(s.Commands(), ","); got != "qmp_capabilities,query-status" {
		t.Errorf("server saw %s", got)
	}
}

func TestQMPErrorReply(t *testing.T) {
	s := qmptest.New(t)
	s.Handle("device_del", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.ReplyError(id, "GenericError", "Device 'nic9' not found")
	})
	q := dialFake(t, s)
	err := q.DeviceDel(context.Background(), "nic9")
	if err == nil || !strings.Contains(err.Error(), "Device 'nic9' not found") || !strings.Contains(err.Error(), "device_del") {
		t.Fatalf("got %v, want the QMP desc and command", err)
	}
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Fatalf("got %#v, want a *Error of class GenericError", err)
	}
	// An unknown command is an error of another class.
	err = q.Execute(context.Background(), "no-such-thing", nil, nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("got %v", err)
	}
}

func TestQMPEvents(t *testing.T) {
	s := qmptest.New(t)
	s.Handle("stop", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Event("STOP", map[string]any{})
		s.Reply(id, struct{}{})
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
	s := qmptest.New(t)
	release := make(chan struct{})
	s.Handle("device_del", func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
		var a struct{ ID string }
		json.Unmarshal(args, &a)
		s.Reply(id, struct{}{})
		go func() {
			// Another device goes first: it must not satisfy the waiter.
			s.Event("DEVICE_DELETED", map[string]string{"device": "other", "path": "/machine/peripheral/other"})
			<-release
			s.Event("DEVICE_DELETED", map[string]string{"device": a.ID, "path": "/machine/peripheral/" + a.ID})
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
	s := qmptest.New(t)
	late := make(chan json.RawMessage, 1)
	s.Handle("slow", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) { late <- id })
	s.Handle("fast", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		// The reply to the abandoned command arrives first: it must be
		// dropped, not taken for this one.
		s.Reply(<-late, "stale")
		s.Reply(id, "fresh")
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
	n := len(s.Commands())
	if err := q.Execute(ctx, "fast", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if len(s.Commands()) != n {
		t.Fatalf("a command with a done context was sent")
	}
}

func TestQMPHangup(t *testing.T) {
	s := qmptest.New(t)
	s.Handle("quit", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) { s.Hangup() })
	s.Handle("hang", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {})
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
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending command: %v, want ErrClosed", err)
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
	if err := q.Execute(context.Background(), "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("command after hangup: %v", err)
	}
	w := q.Subscribe(EventNamed("SHUTDOWN"))
	defer w.Cancel()
	if _, err := w.Wait(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("wait after hangup: %v", err)
	}
}

func TestQMPConcurrent(t *testing.T) {
	s := qmptest.New(t)
	// Replies come in reverse order of a batch of 10.
	var batch []struct {
		id  json.RawMessage
		arg json.RawMessage
	}
	s.Handle("echo", func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
		batch = append(batch, struct {
			id  json.RawMessage
			arg json.RawMessage
		}{id, args})
		if len(batch) == 10 {
			for i := len(batch) - 1; i >= 0; i-- {
				s.Reply(batch[i].id, batch[i].arg)
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
	s := qmptest.New(t)
	got := make(chan []int, 1)
	s.Handle("getfd", func(s *qmptest.Server, id, args json.RawMessage, fds []int) {
		got <- fds
		s.Reply(id, struct{}{})
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
		s := qmptest.New(t)
		s.SetGreeting("")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := Dial(ctx, s.Path(), nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("not qmp", func(t *testing.T) {
		s := qmptest.New(t)
		s.SetGreeting(`{"hello": "world"}`)
		_, err := Dial(context.Background(), s.Path(), nil)
		if err == nil || !strings.Contains(err.Error(), "QMP banner") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("capabilities refused", func(t *testing.T) {
		s := qmptest.New(t)
		s.Handle("qmp_capabilities", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
			s.ReplyError(id, "CommandNotFound", "Capabilities negotiation is already complete")
		})
		_, err := Dial(context.Background(), s.Path(), nil)
		if err == nil || !strings.Contains(err.Error(), "already complete") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no socket", func(t *testing.T) {
		_, err := Dial(context.Background(), filepath.Join(t.TempDir(), "none.sock"), nil)
		if !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestQMPQueryPCIFlattensBridges(t *testing.T) {
	s := qmptest.New(t)
	s.Handle("query-pci", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		s.Send(`{"return": [{"bus": 0, "devices": [{"bus": 0, "slot": 1, "function": 0, "qdev_id": "rng0"},` +
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
