package vc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/virtcontainers/vc/internal/dataport"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

// The host's end of the data port (internal/dataport): the standard
// streams of processes as raw frames on a virtio-serial port of their
// own, where the agent splices a process's pipe into the port. The
// sandbox's owner holds the port's socket; other processes (through the
// agent proxy) and VMs or agents without the port use the stdio RPCs.

// dataHelloTimeout bounds how long the host waits for the agent's Hello:
// an agent without the data port never answers, and the host then uses
// the RPCs. The agent opens the port before it serves the RPCs, and the
// host says Hello once the agent answered a health check, so a new
// agent answers well within it even on a loaded host; an older agent
// costs the first IOStream of a sandbox this wait.
var dataHelloTimeout = 3 * time.Second

// outWindow is how much of an output stream the host lets the agent send
// ahead of what it wrote on: its most memory per stream.
const outWindow = 4 << 20

// inChunk bounds one stdin frame.
const inChunk = 256 << 10

// dataClient is a sandbox's connection to the data port.
type dataClient struct {
	conn net.Conn
	log  *slog.Logger

	wmu sync.Mutex // one frame at a time

	ready chan struct{} // closed once ok or failed is known
	ok    bool          // the agent answered Hello

	mu      sync.Mutex
	next    uint32
	streams map[uint32]*dataStream
	err     error // the connection failed
}

// dataStream is one attached stream on the host.
type dataStream struct {
	id   uint32
	mu   sync.Mutex
	q    [][]byte // output not yet written
	done bool     // the agent ended the stream
	err  error    // why, if it failed
	// credit is what the agent lets the host send (stdin).
	credit int
	wake   chan struct{}
}

func (ds *dataStream) notify() {
	select {
	case ds.wake <- struct{}{}:
	default:
	}
}

// dialDataPort connects to the data port's socket and says Hello; the
// answer comes in the background (ready).
func dialDataPort(addr string, log *slog.Logger) (*dataClient, error) {
	conn, err := net.Dial("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("data port %s: %w", addr, err)
	}
	d := &dataClient{conn: conn, log: log, ready: make(chan struct{}), streams: map[uint32]*dataStream{}}
	if err := d.send(dataport.Header{Type: dataport.Hello, Len: dataport.Version}, nil); err != nil {
		conn.Close()
		return nil, err
	}
	var once sync.Once
	settle := func(ok bool) {
		once.Do(func() {
			d.ok = ok
			close(d.ready)
		})
	}
	wait := dataHelloTimeout
	t := time.AfterFunc(wait, func() {
		settle(false)
		log.Info("data port: no answer from the agent, stdio over RPCs", "waited", wait)
	})
	go func() {
		err := d.readLoop(func() { t.Stop(); settle(true) })
		t.Stop()
		settle(false)
		d.fail(err)
	}()
	return d, nil
}

// usable waits for the agent's Hello and tells whether to use the port.
func (d *dataClient) usable(ctx context.Context) bool {
	if d == nil {
		return false
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		return false
	}
	if !d.ok {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err == nil
}

func (d *dataClient) close() {
	if d != nil {
		d.conn.Close()
	}
}

func (d *dataClient) send(h dataport.Header, payload []byte) error {
	b := make([]byte, dataport.HeaderLen+len(payload))
	h.Put(b)
	copy(b[dataport.HeaderLen:], payload)
	d.wmu.Lock()
	defer d.wmu.Unlock()
	_, err := d.conn.Write(b)
	if err != nil {
		return fmt.Errorf("data port: %w", err)
	}
	return nil
}

// fail ends every stream: the connection is gone.
func (d *dataClient) fail(err error) {
	if err == nil || errors.Is(err, net.ErrClosed) {
		err = errors.New("data port closed")
	}
	d.mu.Lock()
	d.err = err
	ss := d.streams
	d.streams = map[uint32]*dataStream{}
	d.mu.Unlock()
	for _, ds := range ss {
		ds.mu.Lock()
		if !ds.done {
			ds.done, ds.err = true, err
		}
		ds.mu.Unlock()
		ds.notify()
	}
}

func (d *dataClient) readLoop(hello func()) error {
	r := bufio.NewReaderSize(d.conn, 1<<20)
	hdr := make([]byte, dataport.HeaderLen)
	greeted := false
	for {
		h, err := dataport.ReadHeader(r, hdr)
		if err != nil {
			return err
		}
		var payload []byte
		if dataport.HasPayload(h.Type) {
			payload = make([]byte, h.Len)
			if _, err := io.ReadFull(r, payload); err != nil {
				return err
			}
		}
		if !greeted {
			// What an earlier session left in the port comes first.
			if h.Type == dataport.Hello {
				greeted = true
				hello()
			}
			continue
		}
		d.mu.Lock()
		ds := d.streams[h.ID]
		if h.Type == dataport.End {
			delete(d.streams, h.ID)
		}
		d.mu.Unlock()
		if ds == nil {
			continue // detached
		}
		ds.mu.Lock()
		switch h.Type {
		case dataport.Data:
			if len(payload) > 0 {
				ds.q = append(ds.q, payload)
			}
		case dataport.Credit:
			ds.credit += int(h.Len)
		case dataport.End:
			ds.done = true
			if len(payload) > 0 {
				ds.err = errors.New(string(payload))
			}
		}
		ds.mu.Unlock()
		ds.notify()
	}
}

// attach binds a new stream to a process's stream of the given kind.
func (d *dataClient) attach(kind byte, cid, execID string) (*dataStream, error) {
	d.mu.Lock()
	if d.err != nil {
		d.mu.Unlock()
		return nil, d.err
	}
	d.next++
	ds := &dataStream{id: d.next, wake: make(chan struct{}, 1)}
	d.streams[ds.id] = ds
	d.mu.Unlock()
	target := []byte(cid + "\x00" + execID)
	if err := d.send(dataport.Header{Type: dataport.Attach, Kind: kind, ID: ds.id, Len: uint32(len(target))}, target); err != nil {
		return nil, err
	}
	return ds, nil
}

// detach gives a stream up: the agent stops sending it, the rest stays in
// the process's pipe.
func (d *dataClient) detach(ds *dataStream) {
	d.mu.Lock()
	delete(d.streams, ds.id)
	d.mu.Unlock()
	d.send(dataport.Header{Type: dataport.Detach, ID: ds.id}, nil)
}

// copyOut writes a process's output stream to w until its end, granting
// the agent what it wrote on.
func (d *dataClient) copyOut(ctx context.Context, kind byte, cid, execID string, w io.Writer) error {
	ds, err := d.attach(kind, cid, execID)
	if err != nil {
		return err
	}
	if err := d.send(dataport.Header{Type: dataport.Credit, ID: ds.id, Len: outWindow}, nil); err != nil {
		return err
	}
	for {
		ds.mu.Lock()
		var b []byte
		if len(ds.q) > 0 {
			b = ds.q[0]
			ds.q[0] = nil
			ds.q = ds.q[1:]
		}
		done, serr := ds.done, ds.err
		ds.mu.Unlock()
		if b == nil {
			if done {
				return serr
			}
			select {
			case <-ds.wake:
				continue
			case <-ctx.Done():
				d.detach(ds)
				return ctx.Err()
			}
		}
		if _, err := w.Write(b); err != nil {
			// As with the RPCs: stop reading; the process blocks
			// once its pipe is full.
			d.detach(ds)
			return nil
		}
		if err := d.send(dataport.Header{Type: dataport.Credit, ID: ds.id, Len: uint32(len(b))}, nil); err != nil {
			return err
		}
	}
}

// copyIn writes r into a process's stdin within the agent's credit, and
// closes it at r's end.
func (d *dataClient) copyIn(ctx context.Context, cid, execID string, r io.Reader) error {
	ds, err := d.attach(dataport.Stdin, cid, execID)
	if err != nil {
		return err
	}
	buf := make([]byte, dataport.HeaderLen+inChunk)
	for {
		// Wait for credit, or the stream's end (the process no
		// longer reads its stdin).
		var credit int
		for {
			ds.mu.Lock()
			credit = ds.credit
			done, serr := ds.done, ds.err
			ds.mu.Unlock()
			if done {
				return serr
			}
			if credit > 0 {
				break
			}
			select {
			case <-ds.wake:
			case <-ctx.Done():
				d.detach(ds)
				return ctx.Err()
			}
		}
		n, rerr := r.Read(buf[dataport.HeaderLen : dataport.HeaderLen+min(credit, inChunk)])
		if n > 0 {
			dataport.Header{Type: dataport.Data, ID: ds.id, Len: uint32(n)}.Put(buf)
			d.wmu.Lock()
			_, err := d.conn.Write(buf[:dataport.HeaderLen+n])
			d.wmu.Unlock()
			if err != nil {
				return fmt.Errorf("data port: %w", err)
			}
			ds.mu.Lock()
			ds.credit -= n
			ds.mu.Unlock()
		}
		if rerr != nil {
			// The agent closes stdin once what came before is
			// written, then ends the stream.
			return d.send(dataport.Header{Type: dataport.EOF, ID: ds.id}, nil)
		}
	}
}

// ioStream is IOStream over the data port.
func (d *dataClient) ioStream(ctx context.Context, cid, execID string, pio IO) <-chan error {
	done := make(chan error, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	out := func(kind byte, w io.Writer) {
		defer wg.Done()
		if err := d.copyOut(ctx, kind, cid, execID, w); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	if pio.Stdout != nil {
		wg.Add(1)
		go out(dataport.Stdout, pio.Stdout)
	}
	if pio.Stderr != nil {
		wg.Add(1)
		go out(dataport.Stderr, pio.Stderr)
	}
	if pio.Stdin != nil {
		go func() {
			if err := d.copyIn(ctx, cid, execID, pio.Stdin); err != nil {
				d.log.Debug("data port: stdin", "exec_id", execID, "err", err)
			}
		}()
	}
	go func() {
		wg.Wait()
		done <- errors.Join(errs...)
	}()
	return done
}

// dataPort is the sandbox's data port when the agent serves it, else nil.
func (s *Sandbox) dataPort(ctx context.Context) *dataClient {
	s.mu.Lock()
	d := s.data
	s.mu.Unlock()
	if !d.usable(ctx) {
		return nil
	}
	return d
}

// connectDataPort dials vm's data port, if it has one; the agent's
// answer comes in the background.
func (s *Sandbox) connectDataPort(vm hypervisor.Hypervisor) {
	da, ok := vm.(hypervisor.DataAddresser)
	if !ok || da.DataAddress() == "" {
		return
	}
	d, err := dialDataPort(da.DataAddress(), s.log)
	if err != nil {
		s.log.Warn("data port: stdio over RPCs", "err", err)
		return
	}
	s.mu.Lock()
	s.data = d
	s.mu.Unlock()
}

// StdioOverDataPort tells whether this process moves the sandbox's
// process stdio over the data port (the owner of a VM that has one,
// with an agent that serves it), rather than the agent's stdio RPCs. It
// waits for the agent's answer, bounded by ctx.
func (s *Sandbox) StdioOverDataPort(ctx context.Context) bool {
	return s.dataPort(ctx) != nil
}
