package owner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	var mu sync.Mutex
	var got []Request
	srv, err := Listen(path, func(_ context.Context, req Request) (*State, error) {
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		switch req.Op {
		case OpState:
			return &State{ID: "c1", Status: "running"}, nil
		case OpStart:
			return nil, errors.New("cannot start an already running container")
		}
		return nil, nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", fi, err)
	}
	if _, err := Call(path, Request{Op: OpKill, Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	rep, err := Call(path, Request{Op: OpState})
	if err != nil || rep.State == nil || rep.State.Status != "running" {
		t.Fatalf("state: %+v, %v", rep, err)
	}
	// The owner's message is the error's, as is (runc's for vc-runtime).
	if _, err := Call(path, Request{Op: OpStart}); err == nil || err.Error() != "cannot start an already running container" {
		t.Fatalf("start: %v", err)
	}
	if _, err := Call(path, Request{Op: OpAttach}); err == nil || !strings.Contains(err.Error(), "attach") {
		t.Fatalf("attach to an owner without attachments: %v", err)
	}
	mu.Lock()
	if len(got) != 3 || got[0].Signal != 9 || !got[0].All {
		t.Errorf("requests: %+v", got)
	}
	mu.Unlock()
	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, err := Call(path, Request{Op: OpState}); !errors.Is(err, ErrNoOwner) {
		t.Errorf("no owner: %v", err)
	}
}

// An attachment gets the output multiplexed, sends stdin, and ends with
// the output.
func TestAttach(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	stdinR, stdinW := io.Pipe()
	a := NewAttach(stdinW)
	srv, err := Listen(path, func(context.Context, Request) (*State, error) { return nil, nil }, a)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	conn, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	// The attachment is registered once the reply came: wait for it.
	for i := 0; ; i++ {
		a.mu.Lock()
		n := len(a.conns)
		a.mu.Unlock()
		if n == 1 {
			break
		}
		if i > 200 {
			t.Fatal("attachment not registered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := conn.Write([]byte("input\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(stdinR, buf); err != nil || string(buf) != "input\n" {
		t.Fatalf("stdin got %q, %v", buf, err)
	}
	fmt.Fprint(a.Stream(1), "out")
	fmt.Fprint(a.Stream(2), "err")
	fmt.Fprint(a.Stream(1), "put")
	var out, errb bytes.Buffer
	done := make(chan error)
	go func() { done <- Demux(conn, &out, &errb) }()
	time.Sleep(50 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the attachment did not end with Close")
	}
	if out.String() != "output" || errb.String() != "err" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	// Closed: a new attachment ends at once.
	conn2, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := conn2.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("attachment after Close read %d, %v", n, err)
	}
}
