// Package qmp is a client of the QEMU Machine Protocol (QMP), shared by the
// QEMU driver and the tests and benchmarks that talk to a VM's QEMU.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Client is a client of the QEMU Machine Protocol over a unix socket.
//
// Commands may be executed from several goroutines at once: each carries an
// id and its reply is matched by it. Asynchronous events go to Events and to
// the waiters registered with Subscribe. When QEMU hangs up (it exited),
// pending and later commands fail with an error wrapping ErrClosed, and
// Done is closed.
type Client struct {
	conn *net.UnixConn
	log  *slog.Logger

	writeMu sync.Mutex

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan qmpResponse
	waiters map[*EventWaiter]struct{}
	err     error // why the connection ended, once it has

	events chan Event
	done   chan struct{}

	// Version is QEMU's, from the greeting.
	Version Version
}

// Version is QEMU's version as the greeting tells it.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
}

// Event is an asynchronous QMP event.
type Event struct {
	Name      string
	Data      json.RawMessage
	Timestamp time.Time
}

// Error is an error reply: Class is QEMU's error class (GenericError,
// CommandNotFound, DeviceNotFound, ...), Desc its human-readable text.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// ErrClosed is wrapped by errors of commands that cannot complete
// because the connection ended.
var ErrClosed = errors.New("qmp connection closed")

type qmpResponse struct {
	ret json.RawMessage
	err error
}

// wire format, both directions
type qmpMessage struct {
	// greeting
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP,omitempty"`
	// reply
	Return json.RawMessage `json:"return,omitempty"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
	ID json.RawMessage `json:"id,omitempty"`
	// event
	Event     string          `json:"event,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp,omitempty"`
}

type qmpCommand struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
	ID        string `json:"id"`
}

// eventBuffer is how many events Events holds for a slow reader; past it
// new events are dropped (and logged) rather than stalling replies.
const eventBuffer = 64

// Dial connects to QEMU's QMP socket, reads the greeting and negotiates
// capabilities. ctx bounds the handshake only. A nil logger means
// slog.Default().
func Dial(ctx context.Context, path string, log *slog.Logger) (*Client, error) {
	if log == nil {
		log = slog.Default()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: connect %s: %w", path, err)
	}
	conn := c.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	dec := json.NewDecoder(conn)
	var greeting qmpMessage
	if err := dec.Decode(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: read greeting from %s: %w", path, ctxErr(ctx, err))
	}
	if greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: %s did not greet with a QMP banner", path)
	}
	q := &Client{
		conn:    conn,
		log:     log,
		pending: map[string]chan qmpResponse{},
		waiters: map[*EventWaiter]struct{}{},
		events:  make(chan Event, eventBuffer),
		done:    make(chan struct{}),
		Version: Version{
			Major:   greeting.QMP.Version.QEMU.Major,
			Minor:   greeting.QMP.Version.QEMU.Minor,
			Micro:   greeting.QMP.Version.QEMU.Micro,
			Package: greeting.QMP.Version.Package,
		},
	}
	// Negotiate synchronously, before the reader loop exists.
	if err := q.write(qmpCommand{Execute: "qmp_capabilities", ID: "0"}, nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: qmp_capabilities: %w", ctxErr(ctx, err))
	}
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp: qmp_capabilities: %w", ctxErr(ctx, err))
		}
		if m.Event != "" {
			q.deliver(m)
			continue
		}
		if m.Error != nil {
			conn.Close()
			return nil, &Error{Command: "qmp_capabilities", Class: m.Error.Class, Desc: m.Error.Desc}
		}
		break
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: %w", err)
	}
	if err := ctx.Err(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: handshake: %w", err)
	}
	q.nextID = 1
	go q.readLoop(dec)
	return q, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (q *Client) readLoop(dec *json.Decoder) {
	var err error
	for {
		var m qmpMessage
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			q.deliver(m)
		case m.ID != nil:
			var id string
			if json.Unmarshal(m.ID, &id) != nil {
				id = string(m.ID)
			}
			q.mu.Lock()
			ch := q.pending[id]
			delete(q.pending, id)
			q.mu.Unlock()
			if ch == nil {
				// Its command was given up (context cancelled).
				continue
			}
			if m.Error != nil {
				ch <- qmpResponse{err: &Error{Class: m.Error.Class, Desc: m.Error.Desc}}
			} else {
				ch <- qmpResponse{ret: m.Return}
			}
		default:
			q.log.Debug("qmp: message without id or event ignored")
		}
	}
	q.shutdown(fmt.Errorf("%w: %v", ErrClosed, err))
}

func (q *Client) deliver(m qmpMessage) {
	ev := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		ev.Timestamp = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
	}
	q.mu.Lock()
	for w := range q.waiters {
		if w.match(ev) {
			select {
			case w.ch <- ev:
			default:
			}
		}
	}
	q.mu.Unlock()
	select {
	case q.events <- ev:
	default:
		q.log.Warn("qmp: event dropped, nobody reads Events", "event", ev.Name)
	}
}

func (q *Client) shutdown(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	for id, ch := range q.pending {
		ch <- qmpResponse{err: err}
		delete(q.pending, id)
	}
	close(q.done)
	close(q.events)
}

func (q *Client) write(cmd qmpCommand, files []*os.File) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode %s: %w", cmd.Execute, err)
	}
	b = append(b, '\n')
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	if len(files) == 0 {
		_, err = q.conn.Write(b)
		return err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	// The descriptors travel with the first byte of the command.
	_, _, err = q.conn.WriteMsgUnix(b, unix.UnixRights(fds...), nil)
	return err
}

// Events delivers asynchronous events (SHUTDOWN, STOP, RESUME,
// DEVICE_DELETED, ...). It is closed when the connection ends. Events that
// find it full are dropped: use Subscribe to wait for a particular one.
func (q *Client) Events() <-chan Event { return q.events }

// Done is closed when the connection has ended.
func (q *Client) Done() <-chan struct{} { return q.done }

// Err says why the connection ended, nil while it is up.
func (q *Client) Err() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Close ends the connection.
func (q *Client) Close() error {
	err := q.conn.Close()
	<-q.done
	return err
}

// Execute runs a command with arguments (nil for none) and decodes its
// return value into result (nil to discard it). An error reply comes back
// as a *Error.
func (q *Client) Execute(ctx context.Context, command string, args, result any) error {
	return q.execute(ctx, command, args, result, nil)
}

func (q *Client) execute(ctx context.Context, command string, args, result any, files []*os.File) error {
	ch := make(chan qmpResponse, 1)
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	id := strconv.FormatUint(q.nextID, 10)
	q.nextID++
	q.pending[id] = ch
	q.mu.Unlock()

	forget := func() {
		q.mu.Lock()
		delete(q.pending, id)
		q.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		forget()
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	if err := q.write(qmpCommand{Execute: command, Arguments: args, ID: id}, files); err != nil {
		forget()
		if e := q.Err(); e != nil {
			err = e
		}
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			var qe *Error
			if errors.As(r.err, &qe) {
				qe.Command = command
				return qe
			}
			return fmt.Errorf("qmp %s: %w", command, r.err)
		}
		if result != nil && len(r.ret) > 0 {
			if err := json.Unmarshal(r.ret, result); err != nil {
				return fmt.Errorf("qmp %s: decode reply: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		forget()
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

// EventWaiter receives the events that match its filter from the moment
// Subscribe returns: subscribe before the command that causes the event.
type EventWaiter struct {
	q     *Client
	match func(Event) bool
	ch    chan Event
}

// Subscribe registers a waiter for events for which match returns true.
// Cancel it when done.
func (q *Client) Subscribe(match func(Event) bool) *EventWaiter {
	w := &EventWaiter{q: q, match: match, ch: make(chan Event, 16)}
	q.mu.Lock()
	q.waiters[w] = struct{}{}
	q.mu.Unlock()
	return w
}

// Wait returns the next matching event.
func (w *EventWaiter) Wait(ctx context.Context) (Event, error) {
	select {
	case ev := <-w.ch:
		return ev, nil
	default:
	}
	select {
	case ev := <-w.ch:
		return ev, nil
	case <-w.q.done:
		return Event{}, w.q.Err()
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// Cancel unregisters the waiter.
func (w *EventWaiter) Cancel() {
	w.q.mu.Lock()
	delete(w.q.waiters, w)
	w.q.mu.Unlock()
}

// EventNamed matches events by name.
func EventNamed(name string) func(Event) bool {
	return func(ev Event) bool { return ev.Name == name }
}
