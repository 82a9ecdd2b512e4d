package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/dataport"
)

// The data port (internal/dataport): the standard streams of processes
// as raw frames on a virtio-serial port of their own. An output pipe is
// spliced into the port (splicePipe: the bytes do not cross user space),
// a frame header written before each chunk under the port's write lock;
// a terminal, or a stream whose buffer a ReadStdout already fills, is
// sent from that buffer instead. Stdin frames are queued per stream and
// written into the process's stdin by a goroutine of the stream, so a
// process that does not read blocks only its own stream.

// portChunk bounds one output frame.
const portChunk = 1 << 20

// stdinWindow is how much stdin the guest lets the host send ahead of
// what the process read.
const stdinWindow = 1 << 20

// dataPort serves the data port on a virtio-serial device.
type dataPort struct {
	m   *Manager
	fd  int // the port, blocking
	log *slog.Logger

	wmu sync.Mutex // one frame at a time

	mu      sync.Mutex
	cancel  context.CancelFunc // ends the session's streams
	ctx     context.Context
	streams map[uint32]*portStream
}

// portStream is one attached stream.
type portStream struct {
	id     uint32
	kind   byte
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	credit int      // output: what the host lets us send
	queue  [][]byte // stdin: what the process has yet to read
	eof    bool     // stdin: the host closed it
	wake   chan struct{}
}

func (ps *portStream) notify() {
	select {
	case ps.wake <- struct{}{}:
	default:
	}
}

// ServeDataPort serves the data port on the virtio-serial device dev
// until ctx ends.
func (m *Manager) ServeDataPort(ctx context.Context, dev string) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("data port %s: %w", dev, err)
	}
	d := &dataPort{m: m, fd: fd, log: m.log.With("data_port", dev)}
	go func() {
		<-ctx.Done()
		unix.Close(fd)
	}()
	d.log.Info("data port open")
	return d.readLoop(ctx)
}

// portReader reads the port, waiting while the host is away (a read
// then returns 0 at once).
type portReader struct {
	d   *dataPort
	ctx context.Context
}

func (r portReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(r.d.fd, b)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
		// The host closed its end: the session is over. The port
		// reads 0 at once until the host is back: look again in a
		// while (a new host says Hello first).
		r.d.endSession()
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *dataPort) readLoop(ctx context.Context) error {
	r := bufio.NewReaderSize(portReader{d: d, ctx: ctx}, 256<<10)
	hdr := make([]byte, dataport.HeaderLen)
	for {
		h, err := dataport.ReadHeader(r, hdr)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("data port: %w", err)
		}
		var payload []byte
		if dataport.HasPayload(h.Type) {
			payload = make([]byte, h.Len)
			if _, err := io.ReadFull(r, payload); err != nil {
				return fmt.Errorf("data port: %w", err)
			}
		}
		switch h.Type {
		case dataport.Hello:
			d.endSession()
			d.mu.Lock()
			d.ctx, d.cancel = context.WithCancel(ctx)
			d.streams = map[uint32]*portStream{}
			d.mu.Unlock()
			d.send(dataport.Header{Type: dataport.Hello, Len: dataport.Version}, nil)
			d.log.Debug("data port session", "host_version", h.Len)
		case dataport.Attach:
			d.attach(h, string(payload))
		case dataport.Credit:
			if ps := d.stream(h.ID); ps != nil {
				ps.mu.Lock()
				ps.credit += int(h.Len)
				ps.mu.Unlock()
				ps.notify()
			}
		case dataport.Data, dataport.EOF:
			if ps := d.stream(h.ID); ps != nil {
				ps.mu.Lock()
				if h.Type == dataport.EOF {
					ps.eof = true
				} else if len(payload) > 0 {
					ps.queue = append(ps.queue, payload)
				}
				ps.mu.Unlock()
				ps.notify()
			}
		case dataport.Detach:
			if ps := d.stream(h.ID); ps != nil {
				ps.cancel()
				d.drop(ps.id)
			}
		default:
			d.log.Warn("data port: unknown frame", "type", h.Type)
		}
	}
}

// endSession ends the current session's streams: the host is gone, or
// starts over.
func (d *dataPort) endSession() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		d.cancel()
	}
	d.cancel, d.ctx, d.streams = nil, nil, nil
}

func (d *dataPort) stream(id uint32) *portStream {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.streams[id]
}

func (d *dataPort) drop(id uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.streams, id)
}

// send writes one frame: h, then payload.
func (d *dataPort) send(h dataport.Header, payload []byte) error {
	var hb [dataport.HeaderLen]byte
	h.Put(hb[:])
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := d.writeAll(hb[:]); err != nil {
		return err
	}
	return d.writeAll(payload)
}

// writeAll writes b to the port; virtio_console takes at most 32 KiB a
// write.
func (d *dataPort) writeAll(b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(d.fd, b)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return fmt.Errorf("data port write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

func (d *dataPort) end(id uint32, err error) {
	var msg []byte
	if err != nil {
		msg = []byte(err.Error())
	}
	d.send(dataport.Header{Type: dataport.End, ID: id, Len: uint32(len(msg))}, msg)
}

func (d *dataPort) attach(h dataport.Header, target string) {
	d.mu.Lock()
	if d.ctx == nil {
		d.mu.Unlock()
		return // no session: the host did not say Hello
	}
	ctx, cancel := context.WithCancel(d.ctx)
	ps := &portStream{id: h.ID, kind: h.Kind, ctx: ctx, cancel: cancel, wake: make(chan struct{}, 1)}
	d.streams[h.ID] = ps
	d.mu.Unlock()
	id, execID, _ := strings.Cut(target, "\x00")
	p, err := d.m.process(id, execID)
	if err == nil && (p == nil || p.io == nil) {
		err = fmt.Errorf("exec_id %q: no process yet: %w", execID, errdefs.ErrNotFound)
	}
	if err != nil {
		d.drop(h.ID)
		cancel()
		if errdefs.IsNotFound(err) {
			err = nil // as ReadStdout's NotFound: nothing to read
		}
		d.end(h.ID, err)
		return
	}
	switch h.Kind {
	case dataport.Stdout, dataport.Stderr:
		go d.sendOutput(ps, p, h.Kind == dataport.Stderr)
	case dataport.Stdin:
		go d.recvInput(ps, p)
		d.send(dataport.Header{Type: dataport.Credit, ID: h.ID, Len: stdinWindow}, nil)
	default:
		d.drop(h.ID)
		cancel()
		d.end(h.ID, fmt.Errorf("attach: unknown stream kind %d", h.Kind))
	}
}

// waitCredit waits until the host lets the stream send, and returns how
// much.
func (ps *portStream) waitCredit() (int, error) {
	for {
		ps.mu.Lock()
		c := ps.credit
		ps.mu.Unlock()
		if c > 0 {
			return c, nil
		}
		select {
		case <-ps.wake:
		case <-ps.ctx.Done():
			return 0, ps.ctx.Err()
		}
	}
}

func (ps *portStream) use(n int) {
	ps.mu.Lock()
	ps.credit -= n
	ps.mu.Unlock()
}

// sendOutput sends a process's stdout or stderr until its end.
func (d *dataPort) sendOutput(ps *portStream, p *Process, stderr bool) {
	defer d.drop(ps.id)
	defer ps.cancel()
	s := p.io.stdout
	if stderr {
		s = p.io.stderr
	}
	var err error
	if f := s.take(); f != nil {
		var eof bool
		if spliceOutput {
			eof, err = d.splicePipe(ps, f)
		} else {
			eof, err = d.copyPipe(ps, f)
		}
		if !eof {
			if ps.ctx.Err() != nil {
				// Detached, or the host went: the rest stays in
				// the pipe for the next reader.
				f.SetReadDeadline(time.Time{})
				s.giveBack()
				return
			}
			d.log.Warn("data port: output", "exec_id", p.execID, "err", err)
		}
		s.finish()
	} else {
		err = d.copyStream(ps, s)
		if ps.ctx.Err() != nil {
			return
		}
	}
	p.c.maybeForget(p)
	d.end(ps.id, err)
}

// copyPipe sends what the pipe f holds, a chunk at a time within the
// host's credit, until the pipe's writers are all gone and it is empty
// (eof) or something fails. Each chunk is read into a buffer behind room
// for its header and written as one frame.
//
// The fallback to splicePipe (spliceOutput), and how the agent sent
// output before it spliced: one copy through user space more, 15-23 ms
// of QEMU CPU a MiB under TCG against splicing's 12.
func (d *dataPort) copyPipe(ps *portStream, f *os.File) (eof bool, err error) {
	stop := context.AfterFunc(ps.ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	buf := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(buf)
	b := *buf
	for {
		credit, err := ps.waitCredit()
		if err != nil {
			return false, err
		}
		n, rerr := f.Read(b[dataport.HeaderLen : dataport.HeaderLen+min(credit, len(b)-dataport.HeaderLen)])
		if n > 0 {
			d.m.cfg.BeforeOutput(ps.ctx)
			dataport.Header{Type: dataport.Data, ID: ps.id, Len: uint32(n)}.Put(b)
			d.wmu.Lock()
			err := d.writeAll(b[:dataport.HeaderLen+n])
			d.wmu.Unlock()
			if err != nil {
				return false, err
			}
			ps.use(n)
		}
		if errors.Is(rerr, io.EOF) {
			return true, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}

// spliceOutput: send output pipes with splice(2) (splicePipe), not
// through a buffer (copyPipe).
var spliceOutput = true

// splicePipe moves the pipe f into the port without copying it through
// user space, a chunk at a time within the host's credit: splice from f
// into a pipe of the stream's own (page references move, bytes do not),
// then the frame's header and, under the same lock, all of that pipe
// into the port (virtio_console's splice_write hands the pages to the
// device).
//
// The pipe between is not for speed but for the guest kernel: 6.1's
// port_fops_splice_write sizes its scatterlist by the pipe's occupancy
// and the ring walks the list to its end, so a splice that leaves
// buffers in the pipe (a chunk shorter than the pipe holds, or a writer
// adding to the pipe meanwhile) hands the device empty entries: a NULL
// dereference with interrupts off, the guest dead (it happened after
// 4-13 MiB of 64 when the agent spliced the process's pipe directly).
// The stream's own pipe is written by this goroutine only, and always
// emptied whole.
func (d *dataPort) splicePipe(ps *portStream, f *os.File) (eof bool, err error) {
	var mid [2]int
	if err := unix.Pipe2(mid[:], unix.O_CLOEXEC); err != nil {
		return false, fmt.Errorf("data port: %w", err)
	}
	defer unix.Close(mid[0])
	defer unix.Close(mid[1])
	// At most 128 pages: a virtio-serial queue's size in QEMU, so a
	// frame's scatterlist fits the ring even without indirect
	// descriptors.
	room := 512 << 10
	if n, err := unix.FcntlInt(uintptr(mid[1]), unix.F_SETPIPE_SZ, room); err != nil {
		room = 64 << 10 // the default
	} else {
		room = n
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ps.ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		credit, err := ps.waitCredit()
		if err != nil {
			return false, err
		}
		var n int64
		var serr error
		rerr := rc.Read(func(fd uintptr) bool {
			n, serr = unix.Splice(int(fd), nil, mid[1], nil, min(credit, room), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if errors.Is(serr, unix.EINTR) {
				return false
			}
			return !errors.Is(serr, unix.EAGAIN)
		})
		if rerr != nil {
			return false, rerr
		}
		if serr != nil {
			return false, fmt.Errorf("data port: splice from the process's pipe: %w", serr)
		}
		if n == 0 {
			return true, nil // no writer left, and empty
		}
		d.m.cfg.BeforeOutput(ps.ctx)
		if err := d.spliceFrame(ps.id, mid[0], int(n)); err != nil {
			return false, err
		}
		ps.use(int(n))
	}
}

// spliceFrame writes a Data header for n bytes, then splices all n bytes
// of the pipe pfd (which holds exactly those) into the port, under the
// write lock so that the pair is one frame.
func (d *dataPort) spliceFrame(id uint32, pfd, n int) error {
	var hb [dataport.HeaderLen]byte
	dataport.Header{Type: dataport.Data, ID: id, Len: uint32(n)}.Put(hb[:])
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if err := d.writeAll(hb[:]); err != nil {
		return err
	}
	for n > 0 {
		k, err := unix.Splice(pfd, nil, d.fd, nil, n, unix.SPLICE_F_MOVE)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || k == 0 {
			// The device refused the buffer (the kernel then drops
			// what it took from the pipe): fill the frame with
			// zeros so the port's framing holds for the other
			// streams, and end this one with the error.
			if err == nil {
				err = errors.New("moved nothing")
			}
			d.writeAll(make([]byte, n))
			return fmt.Errorf("data port: splice into the port, %d bytes of a frame lost: %w", n, err)
		}
		n -= int(k)
	}
	return nil
}

// chunkPool holds the buffers of copyPipe.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, dataport.HeaderLen+portChunk); return &b }}

// copyStream sends what a stream's buffer holds (a terminal, or a pipe
// that a ReadStdout began to read) until its end.
func (d *dataPort) copyStream(ps *portStream, s *stream) error {
	for {
		credit, err := ps.waitCredit()
		if err != nil {
			return err
		}
		b, err := s.read(ps.ctx, min(credit, portChunk))
		if err == ErrEOF {
			return nil
		}
		if err != nil {
			return err
		}
		d.m.cfg.BeforeOutput(ps.ctx)
		if err := d.send(dataport.Header{Type: dataport.Data, ID: ps.id, Len: uint32(len(b))}, b); err != nil {
			return err
		}
		ps.use(len(b))
	}
}

// recvInput writes what the host sends into the process's stdin, and
// closes it at the host's EOF.
func (d *dataPort) recvInput(ps *portStream, p *Process) {
	defer d.drop(ps.id)
	defer ps.cancel()
	for {
		ps.mu.Lock()
		var b []byte
		if len(ps.queue) > 0 {
			b = ps.queue[0]
			ps.queue = ps.queue[1:]
		}
		eof := ps.eof
		ps.mu.Unlock()
		if b == nil {
			if eof {
				err := p.io.closeStdin()
				d.end(ps.id, err)
				return
			}
			select {
			case <-ps.wake:
				continue
			case <-ps.ctx.Done():
				return
			}
		}
		if _, err := p.io.write(ps.ctx, b); err != nil {
			if ps.ctx.Err() == nil {
				d.end(ps.id, err)
			}
			return
		}
		d.send(dataport.Header{Type: dataport.Credit, ID: ps.id, Len: uint32(len(b))}, nil)
	}
}
