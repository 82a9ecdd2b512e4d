/*
   Copyright The containerd Authors.

   Licensed under the Apache License, Version 2.0 (the "License");
   you may not use this file except in compliance with the License.
   You may obtain a copy of the License at

       http://www.apache.org/licenses/LICENSE-2.0

   Unless required by applicable law or agreed to in writing, software
   distributed under the License is distributed on an "AS IS" BASIS,
   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
   See the License for the specific language governing permissions and
   limitations under the License.
*/

package ttrpc

import (
	"context"
	"errors"
	"io"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/log"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type Server struct {
	config   *serverConfig
	services *serviceSet
	codec    codec

	mu          sync.Mutex
	listeners   map[net.Listener]struct{}
	connections map[*serverConn]struct{} // all connections to current state
	done        chan struct{}            // marks point at which we stop serving requests
}

func NewServer(opts ...ServerOpt) (*Server, error) {
	config := &serverConfig{}
	for _, opt := range opts {
		if err := opt(config); err != nil {
			return nil, err
		}
	}
	if config.interceptor == nil {
		config.interceptor = defaultServerInterceptor
	}

	return &Server{
		config:      config,
		services:    newServiceSet(config.interceptor),
		done:        make(chan struct{}),
		listeners:   make(map[net.Listener]struct{}),
		connections: make(map[*serverConn]struct{}),
	}, nil
}

// Register registers a map of methods to method handlers
// TODO: Remove in 2.0, does not support streams
func (s *Server) Register(name string, methods map[string]Method) {
	s.services.register(name, &ServiceDesc{Methods: methods})
}

func (s *Server) RegisterService(name string, desc *ServiceDesc) {
	s.services.register(name, desc)
}

func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	s.addListenerLocked(l)
	defer s.closeListener(l)

	select {
	case <-s.done:
		s.mu.Unlock()
		return ErrServerClosed
	default:
	}
	s.mu.Unlock()

	var (
		backoff    time.Duration
		handshaker = s.config.handshaker
	)

	if handshaker == nil {
		handshaker = handshakerFunc(noopHandshake)
	}

	for {
		conn, err := l.Accept()
		if err != nil {
			select {
			case <-s.done:
				return ErrServerClosed
			default:
			}

			if terr, ok := err.(interface {
				Temporary() bool
			}); ok && terr.Temporary() {
				if backoff == 0 {
					backoff = time.Millisecond
				} else {
					backoff *= 2
				}

				backoff = min(time.Second, backoff)

				sleep := time.Duration(rand.Int63n(int64(backoff)))
				log.G(ctx).WithError(err).Errorf("ttrpc: failed accept; backoff %v", sleep)
				time.Sleep(sleep)
				continue
			}

			return err
		}

		backoff = 0

		approved, handshake, err := handshaker.Handshake(ctx, conn)
		if err != nil {
			log.G(ctx).WithError(err).Error("ttrpc: refusing connection after handshake")
			conn.Close()
			continue
		}

		sc, err := s.newConn(approved, handshake)
		if err != nil {
			log.G(ctx).WithError(err).Error("ttrpc: create connection failed")
			conn.Close()
			continue
		}

		go sc.run(ctx)
	}
}

func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	select {
	case <-s.done:
	default:
		// protected by mutex
		close(s.done)
	}
	lnerr := s.closeListeners()
	s.mu.Unlock()

	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	for {
		s.closeIdleConns()

		if s.countConnection() == 0 {
			break
		}

		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}

	return lnerr
}

// Close the server without waiting for active connections.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()

	select {
	case <-s.done:
	default:
		// protected by mutex
		close(s.done)
	}

	err := s.closeListeners()
	for c := range s.connections {
		c.close()
		delete(s.connections, c)
	}

	return err
}

func (s *Server) addListenerLocked(l net.Listener) {
	s.listeners[l] = struct{}{}
}

func (s *Server) closeListener(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	return s.closeListenerLocked(l)
}

func (s *Server) closeListenerLocked(l net.Listener) error {
	defer delete(s.listeners, l)
	return l.Close()
}

func (s *Server) closeListeners() error {
	var err error
	for l := range s.listeners {
		if cerr := s.closeListenerLocked(l); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

func (s *Server) addConnection(c *serverConn) error {
	s.mu.Lock()
	defer s.mu.Unlock()

	select {
	case <-s.done:
		return ErrServerClosed
	default:
	}

	s.connections[c] = struct{}{}
	return nil
}

func (s *Server) delConnection(c *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()

	delete(s.connections, c)
}

func (s *Server) countConnection() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return len(s.connections)
}

func (s *Server) closeIdleConns() {
	s.mu.Lock()
	defer s.mu.Unlock()

	for c := range s.connections {
		if st, ok := c.getState(); !ok || st == connStateActive {
			continue
		}
		c.close()
		delete(s.connections, c)
	}
}

type connState int

const (
	connStateActive = iota + 1 // outstanding requests
	connStateIdle              // no requests
	connStateClosed            // closed connection
)

func (cs connState) String() string {
	switch cs {
	case connStateActive:
		return "active"
	case connStateIdle:
		return "idle"
	case connStateClosed:
		return "closed"
	default:
		return "unknown"
	}
}

func (s *Server) newConn(conn net.Conn, handshake interface{}) (*serverConn, error) {
	c := &serverConn{
		server:    s,
		conn:      conn,
		handshake: handshake,
		shutdown:  make(chan struct{}),
	}
	c.setState(connStateIdle)
	if err := s.addConnection(c); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

type serverConn struct {
	server    *Server
	conn      net.Conn
	handshake interface{} // data from handshake, not used for now
	state     atomic.Value

	shutdownOnce sync.Once
	shutdown     chan struct{} // forced shutdown, used by close

	// Set by run. Requests are read by one goroutine at a time (the
	// reader: run's, or a handoff's, see runInline); responses are
	// written by the goroutine that made them, under wmu: no writer
	// goroutine, no channel between a handler and the connection.
	ch         *channel
	wmu        sync.Mutex
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{} // closed by finish
	doneOnce   sync.Once
	readFailed chan struct{} // closed when reading stopped on an error that is not the peer going away
	streams    sync.Map

	smu    sync.Mutex // orders changes of active with the state they set
	active int
	idle   chan struct{} // cap 1: active fell to 0

	lastStreamID uint32 // the reader's

	// WithInlineUnary: the generation of the inline call that holds the
	// reader role (0: none), and the timer that hands the role on.
	inlineGen uint64 // the reader's
	inlineTok atomic.Uint64
	handoff   *time.Timer
}

func (c *serverConn) getState() (connState, bool) {
	cs, ok := c.state.Load().(connState)
	return cs, ok
}

func (c *serverConn) setState(newstate connState) {
	c.state.Store(newstate)
}

func (c *serverConn) close() error {
	c.shutdownOnce.Do(func() {
		close(c.shutdown)
	})

	return nil
}

func (c *serverConn) run(sctx context.Context) {
	c.ch = newChannel(c.conn)
	c.ctx, c.cancel = context.WithCancel(sctx)
	c.done = make(chan struct{})
	c.readFailed = make(chan struct{})
	c.idle = make(chan struct{}, 1)
	if c.server.config.inline != nil {
		c.handoff = time.AfterFunc(time.Hour, c.handOff)
		c.handoff.Stop()
	}
	go c.watch()
	c.read()
}

// finish ends the connection: handlers still running see their context
// cancelled, as upstream.
func (c *serverConn) finish() {
	c.doneOnce.Do(func() {
		c.server.delConnection(c)
		close(c.done)
		c.cancel()
		c.conn.Close()
		if c.handoff != nil {
			c.handoff.Stop()
		}
	})
}

// watch finishes the connection once it is idle after a shutdown (or
// after reading failed), as upstream's writer loop did.
func (c *serverConn) watch() {
	select {
	case <-c.done:
		return
	case <-c.shutdown:
	case <-c.readFailed:
	}
	for {
		c.smu.Lock()
		n := c.active
		c.smu.Unlock()
		if n <= 0 {
			c.finish()
			return
		}
		select {
		case <-c.idle:
		case <-c.done:
			return
		}
	}
}

func (c *serverConn) addActive() {
	c.smu.Lock()
	c.active++
	if c.active == 1 {
		c.setState(connStateActive)
	}
	c.smu.Unlock()
}

func (c *serverConn) doneActive() {
	c.smu.Lock()
	c.active--
	if c.active == 0 {
		c.setState(connStateIdle)
		select {
		case c.idle <- struct{}{}:
		default:
		}
	}
	c.smu.Unlock()
}

func (c *serverConn) send(id uint32, t messageType, flags uint8, p []byte) error {
	c.wmu.Lock()
	err := c.ch.send(id, t, flags, p)
	c.wmu.Unlock()
	if err != nil {
		log.G(c.ctx).WithError(err).Error("failed sending message on channel")
		c.finish()
	}
	return err
}

// respond writes the response (or stream data) of stream id from the
// calling goroutine.
func (c *serverConn) respond(id uint32, st *status.Status, data []byte, streaming, closeStream bool) error {
	select {
	case <-c.done:
		return ErrClosed
	default:
	}
	var err error
	if !streaming || st.Code() != codes.OK {
		var p []byte
		p, err = c.server.codec.Marshal(&Response{
			Status:  st.Proto(),
			Payload: data,
		})
		if err != nil {
			log.G(c.ctx).WithError(err).Error("failed marshaling response")
			c.finish()
		} else {
			err = c.send(id, messageTypeResponse, 0, p)
		}
	} else {
		var flags uint8
		if closeStream {
			flags = flagRemoteClosed
		}
		if data == nil {
			flags = flags | flagNoData
		}
		err = c.send(id, messageTypeData, flags, data)
	}
	if closeStream {
		// The ttrpc protocol currently does not support the case where
		// the server is localClosed but not remoteClosed. Once the server
		// is closing, the whole stream may be considered finished
		c.streams.Delete(id)
		c.doneActive()
	}
	return err
}

// sendStatus answers stream id with an error status. Even though the
// stream id may be invalid, it is sent back on the same stream id so the
// client knows which stream id was bad. It returns false once the
// connection is finished.
func (c *serverConn) sendStatus(id uint32, st *status.Status) bool {
	c.streams.Delete(id)
	p, err := c.server.codec.Marshal(&Response{Status: st.Proto()})
	if err != nil {
		log.G(c.ctx).WithError(err).Error("failed marshaling response")
		c.finish()
		return false
	}
	return c.send(id, messageTypeResponse, 0, p) == nil
}

// read reads requests until the connection ends, or until it hands the
// reader role on (runInline).
func (c *serverConn) read() {
	for {
		select {
		case <-c.shutdown:
			return
		case <-c.done:
			return
		default: // proceed
		}

		mh, p, err := c.ch.recv()
		if err != nil {
			status, ok := status.FromError(err)
			if !ok {
				select {
				case <-c.done:
					return
				default:
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
					// The client went away and we should stop processing
					// requests, so that the client connection is closed
					c.finish()
					return
				}
				log.G(c.ctx).WithError(err).Error("error receiving message")
				close(c.readFailed)
				return
			}

			// in this case, we send an error for that particular message
			// when the status is defined.
			if !c.sendStatus(mh.StreamID, status) {
				return
			}

			continue
		}

		if mh.StreamID%2 != 1 {
			// enforce odd client initiated identifiers.
			if !c.sendStatus(mh.StreamID, status.Newf(codes.InvalidArgument, "StreamID must be odd for client initiated streams")) {
				return
			}
			continue
		}

		if mh.Type == messageTypeData {
			i, ok := c.streams.Load(mh.StreamID)
			if !ok {
				if !c.sendStatus(mh.StreamID, status.Newf(codes.InvalidArgument, "StreamID is no longer active")) {
					return
				}
				continue
			}
			sh := i.(*streamHandler)
			if mh.Flags&flagNoData != flagNoData {
				unmarshal := func(obj interface{}) error {
					err := protoUnmarshal(p, obj)
					c.ch.putmbuf(p)
					return err
				}

				if err := sh.data(unmarshal); err != nil {
					if !c.sendStatus(mh.StreamID, status.Newf(codes.InvalidArgument, "data handling error: %v", err)) {
						return
					}
					continue
				}
			}

			if mh.Flags&flagRemoteClosed == flagRemoteClosed {
				sh.closeSend()
				if len(p) > 0 {
					if !c.sendStatus(mh.StreamID, status.Newf(codes.InvalidArgument, "data close message cannot include data")) {
						return
					}
					continue
				}
			}
		} else if mh.Type == messageTypeRequest {
			if mh.StreamID <= c.lastStreamID {
				// enforce odd client initiated identifiers.
				if !c.sendStatus(mh.StreamID, status.Newf(codes.InvalidArgument, "StreamID cannot be re-used and must increment")) {
					return
				}
				continue

			}
			c.lastStreamID = mh.StreamID

			// TODO: Make request type configurable
			// Unmarshaller which takes in a byte array and returns an interface?
			var req Request
			if err := c.server.codec.Unmarshal(p, &req); err != nil {
				c.ch.putmbuf(p)
				if !c.sendStatus(mh.StreamID, status.Newf(codes.InvalidArgument, "unmarshal request error: %v", err)) {
					return
				}
				continue
			}
			c.ch.putmbuf(p)

			id := mh.StreamID
			respond := func(status *status.Status, data []byte, streaming, closeStream bool) error {
				return c.respond(id, status, data, streaming, closeStream)
			}
			c.addActive()
			sh, unary, err := c.server.services.handle(c.ctx, &req, respond)
			if err != nil {
				c.doneActive()
				status, _ := status.FromError(err)
				if !c.sendStatus(mh.StreamID, status) {
					return
				}
				continue
			}
			if sh != nil {
				c.streams.Store(id, sh)
			}
			if unary != nil {
				if c.handoff != nil && c.server.config.inline(req.Service, req.Method) {
					if !c.runInline(unary) {
						return
					}
				} else {
					go unary()
				}
			}
		}
		// TODO: else we must ignore this for future compat. log this?
	}
}

// runInline runs call on the reader goroutine. It returns false if the
// call took longer than the handoff and another goroutine is the reader
// now.
func (c *serverConn) runInline(call func()) bool {
	c.inlineGen++
	g := c.inlineGen
	c.inlineTok.Store(g)
	c.handoff.Reset(c.server.config.handoff)
	call()
	if c.inlineTok.CompareAndSwap(g, 0) {
		c.handoff.Stop()
		return true
	}
	return false
}

// handOff runs on the handoff timer's goroutine: if an inline call still
// holds the reader role, this goroutine takes it over.
func (c *serverConn) handOff() {
	g := c.inlineTok.Load()
	if g != 0 && c.inlineTok.CompareAndSwap(g, 0) {
		c.read()
	}
}

var noopFunc = func() {}

func getRequestContext(ctx context.Context, req *Request) (retCtx context.Context, cancel func()) {
	if len(req.Metadata) > 0 {
		md := MD{}
		md.fromRequest(req)
		ctx = WithMetadata(ctx, md)
	}

	cancel = noopFunc
	if req.TimeoutNano == 0 {
		return ctx, cancel
	}

	ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutNano))
	return ctx, cancel
}
