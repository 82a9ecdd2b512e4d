package vc

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtcontainers/vc/internal/dataport"
)

// fakeGuest serves one data port connection: it answers Hello when
// answer is set, and sends out, in 1000-byte frames within the host's
// credit, on every stdout stream attached, then ends it. It fails the
// test when the host sends more than it granted or the guest would have
// to exceed the credit.
func fakeGuest(t *testing.T, conn net.Conn, answer bool, out []byte, maxCredit chan<- int) {
	defer conn.Close()
	hdr := make([]byte, dataport.HeaderLen)
	credit := map[uint32]int{}
	pending := map[uint32][]byte{}
	seen := 0
	for {
		h, err := dataport.ReadHeader(conn, hdr)
		if err != nil {
			return
		}
		var payload []byte
		if dataport.HasPayload(h.Type) {
			payload = make([]byte, h.Len)
			if _, err := io.ReadFull(conn, payload); err != nil {
				return
			}
		}
		switch h.Type {
		case dataport.Hello:
			if answer {
				conn.Write(dataport.Header{Type: dataport.Hello, Len: dataport.Version}.Bytes())
			}
		case dataport.Attach:
			if string(payload) != "c\x00e" || h.Kind != dataport.Stdout {
				t.Errorf("attach %q kind %d, want c/e stdout", payload, h.Kind)
			}
			pending[h.ID] = out
		case dataport.Credit:
			credit[h.ID] += int(h.Len)
			seen = max(seen, credit[h.ID])
		}
		for id, rest := range pending {
			for len(rest) > 0 && credit[id] > 0 {
				n := min(1000, len(rest), credit[id])
				conn.Write(append(dataport.Header{Type: dataport.Data, ID: id, Len: uint32(n)}.Bytes(), rest[:n]...))
				credit[id] -= n
				rest = rest[n:]
			}
			pending[id] = rest
			if len(rest) == 0 {
				conn.Write(dataport.Header{Type: dataport.End, ID: id}.Bytes())
				delete(pending, id)
				maxCredit <- seen
			}
		}
	}
}

func listenFake(t *testing.T) (string, net.Listener) {
	addr := filepath.Join(t.TempDir(), "data.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return addr, l
}

func TestDataPortNoAnswerFallsBack(t *testing.T) {
	old := dataHelloTimeout
	dataHelloTimeout = 200 * time.Millisecond
	defer func() { dataHelloTimeout = old }()
	addr, l := listenFake(t)
	go func() {
		if c, err := l.Accept(); err == nil {
			fakeGuest(t, c, false, nil, nil)
		}
	}()
	d, err := dialDataPort(addr, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	start := time.Now()
	if d.usable(context.Background()) {
		t.Fatal("usable without the agent's Hello")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("gave up after %s, want about %s", took, dataHelloTimeout)
	}
}

func TestDataPortOutputWithinCredit(t *testing.T) {
	addr, l := listenFake(t)
	out := make([]byte, 3*outWindow+12345)
	for i := range out {
		out[i] = byte(i % 251)
	}
	maxCredit := make(chan int, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			fakeGuest(t, c, true, out, maxCredit)
		}
	}()
	d, err := dialDataPort(addr, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if !d.usable(ctx) {
		t.Fatal("not usable though the agent answered")
	}
	var got bytes.Buffer
	if err := <-d.ioStream(ctx, "c", "e", IO{Stdout: &got}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), out) {
		t.Errorf("got %d bytes, want the %d sent, equal", got.Len(), len(out))
	}
	if m := <-maxCredit; m > outWindow {
		t.Errorf("the host granted %d bytes ahead, more than its window %d", m, outWindow)
	}
}
