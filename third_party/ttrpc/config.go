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
	"time"
)

type serverConfig struct {
	handshaker  Handshaker
	interceptor UnaryServerInterceptor

	// inline says which unary methods run on the connection's reader
	// goroutine (nil: none); handoff is how long one may run there
	// before a fresh goroutine takes over reading the connection.
	inline  func(service, method string) bool
	handoff time.Duration
}

// WithInlineUnary makes the server run the unary methods for which
// inline(service, method) is true on the goroutine that read the request,
// and write the response from there, instead of starting a goroutine per
// request: a call costs no goroutine handoff. Requests behind it on the
// same connection wait while it runs, for handoff at most: if it has not
// returned by then, a new goroutine takes over reading the connection
// and the call finishes where it is. Methods that can block for long
// (long polls) should answer false, so that they start on their own
// goroutine at once, as every call does without this option. handoff
// must be positive.
//
// This option is not in upstream containerd/ttrpc; it changes nothing on
// the wire.
func WithInlineUnary(handoff time.Duration, inline func(service, method string) bool) ServerOpt {
	return func(c *serverConfig) error {
		if handoff <= 0 {
			return errors.New("ttrpc: WithInlineUnary: handoff must be positive")
		}
		if inline == nil {
			return errors.New("ttrpc: WithInlineUnary: inline is nil")
		}
		c.inline = inline
		c.handoff = handoff
		return nil
	}
}

// ServerOpt for configuring a ttrpc server
type ServerOpt func(*serverConfig) error

// WithServerHandshaker can be passed to NewServer to ensure that the
// handshaker is called before every connection attempt.
//
// Only one handshaker is allowed per server.
func WithServerHandshaker(handshaker Handshaker) ServerOpt {
	return func(c *serverConfig) error {
		if c.handshaker != nil {
			return errors.New("only one handshaker allowed per server")
		}
		c.handshaker = handshaker
		return nil
	}
}

// WithUnaryServerInterceptor sets the provided interceptor on the server
func WithUnaryServerInterceptor(i UnaryServerInterceptor) ServerOpt {
	return func(c *serverConfig) error {
		if c.interceptor != nil {
			return errors.New("only one unchained interceptor allowed per server")
		}
		c.interceptor = i
		return nil
	}
}

// WithChainUnaryServerInterceptor sets the provided chain of server interceptors
func WithChainUnaryServerInterceptor(interceptors ...UnaryServerInterceptor) ServerOpt {
	return func(c *serverConfig) error {
		if len(interceptors) == 0 {
			return nil
		}
		if c.interceptor != nil {
			interceptors = append([]UnaryServerInterceptor{c.interceptor}, interceptors...)
		}
		c.interceptor = func(
			ctx context.Context,
			unmarshal Unmarshaler,
			info *UnaryServerInfo,
			method Method) (interface{}, error) {
			return interceptors[0](ctx, unmarshal, info,
				chainUnaryServerInterceptors(info, method, interceptors[1:]))
		}
		return nil
	}
}

func chainUnaryServerInterceptors(info *UnaryServerInfo, method Method, interceptors []UnaryServerInterceptor) Method {
	if len(interceptors) == 0 {
		return method
	}
	return func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
		return interceptors[0](ctx, unmarshal, info,
			chainUnaryServerInterceptors(info, method, interceptors[1:]))
	}
}
