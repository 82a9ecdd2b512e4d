// Package relay carries a stream connection's bytes to another, both ways,
// as the port forwarders of the shim and the agent do.
package relay

import "io"

// Conn is a full-duplex stream whose write side closes alone (a TCP
// connection, a forwarded port).
type Conn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// bufSize is each direction's copy buffer.
const bufSize = 64 << 10

// Pipe copies a to b and b to a until both directions ended: one ends when
// its reader reaches EOF, and closes its writer's write side, so that each
// side's half-close reaches the other. The first error ends both. Pipe
// closes a and b, and returns the first error (nil for two clean ends).
func Pipe(a, b Conn) error {
	done := make(chan error, 2)
	half := func(dst, src Conn) {
		_, err := io.CopyBuffer(dst, src, make([]byte, bufSize))
		if err == nil {
			err = dst.CloseWrite()
		}
		done <- err
	}
	go half(a, b)
	go half(b, a)
	var first error
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil && first == nil {
			first = err
			a.Close()
			b.Close()
		}
	}
	a.Close()
	b.Close()
	return first
}
