// Package dataport is the framing of the stdio data port
// (hypervisor.DataPortName): a virtio-serial port beside the agent's that
// carries the standard streams of processes in the VM as raw bytes,
// without ttRPC. Both directions are a sequence of frames, each a
// 12-byte header (type, kind, stream id, length) and, for some types, a
// payload of that length. A frame is written whole under one lock, so
// the streams interleave frame by frame and each stays in order.
//
// Host to guest: Hello (Len = version) starts a session and ends any
// previous one; Attach (Kind, payload "container\x00exec") binds stream
// ID to a process's stdout, stderr or stdin; Credit (Len bytes) lets the
// guest send that much more of an output stream; Data carries stdin;
// EOF closes stdin; Detach ends a stream the host gives up on (what is
// not sent stays in the process's pipe).
//
// Guest to host: Hello answers the host's; Data carries output; End
// ends a stream (empty payload: the end of the output, or of stdin's
// use; else why it failed); Credit lets the host send that much more
// stdin.
//
// Flow control: the guest sends an output stream only what the host
// granted; the host grants what it has written on, so a host reader that
// stops holds back its own stream only, the rest waiting in the
// process's pipe, never the port. The same holds for stdin the other way.
package dataport

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frame types.
const (
	Hello  byte = 1
	Attach byte = 2
	Credit byte = 3
	Data   byte = 4
	EOF    byte = 5 // host: stdin is over
	End    byte = 6 // guest: the stream is over
	Detach byte = 7
)

// Stream kinds (Attach's Kind).
const (
	Stdout byte = 1
	Stderr byte = 2
	Stdin  byte = 3
)

// Version is this framing's version, exchanged in Hello.
const Version = 1

// HeaderLen is the size of a frame's header.
const HeaderLen = 12

// MaxPayload bounds a frame's payload: a reader refuses larger ones.
const MaxPayload = 16 << 20

// Header is a frame's header.
type Header struct {
	Type, Kind byte
	ID         uint32
	Len        uint32
}

// Put encodes h into b, which has HeaderLen bytes.
func (h Header) Put(b []byte) {
	b[0], b[1], b[2], b[3] = h.Type, h.Kind, 0, 0
	binary.LittleEndian.PutUint32(b[4:], h.ID)
	binary.LittleEndian.PutUint32(b[8:], h.Len)
}

// Bytes is h encoded.
func (h Header) Bytes() []byte {
	b := make([]byte, HeaderLen)
	h.Put(b)
	return b
}

// HasPayload tells whether a frame of type t from the given side carries
// Len bytes after its header.
func HasPayload(t byte) bool {
	return t == Attach || t == Data || t == End
}

// ReadHeader reads a header from r.
func ReadHeader(r io.Reader, b []byte) (Header, error) {
	if _, err := io.ReadFull(r, b[:HeaderLen]); err != nil {
		return Header{}, err
	}
	h := Header{Type: b[0], Kind: b[1], ID: binary.LittleEndian.Uint32(b[4:]), Len: binary.LittleEndian.Uint32(b[8:])}
	if HasPayload(h.Type) && h.Len > MaxPayload {
		return h, fmt.Errorf("data port: frame type %d: payload of %d bytes, most %d", h.Type, h.Len, MaxPayload)
	}
	return h, nil
}
