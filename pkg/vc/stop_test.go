package vc

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// Stop's DestroySandbox loses its answer when the guest powers off (or the
// owner's proxy closes) first: that is logged at debug level, not as a
// warning on the terminal of vc rm -f. The agent's own refusals stay
// warnings.
func TestConnectionLost(t *testing.T) {
	// What an owner's proxy answers when its own connection closed: a
	// status carrying the text, turned back into an error here.
	viaProxy := errgrpc.ToNative(errgrpc.ToGRPC(ttrpc.ErrClosed))
	for _, err := range []error{ttrpc.ErrClosed, fmt.Errorf("call: %w", io.EOF), syscall.ECONNRESET, viaProxy} {
		if !connectionLost(err) {
			t.Errorf("connectionLost(%v) = false", err)
		}
	}
	refused := errgrpc.ToNative(errgrpc.ToGRPC(fmt.Errorf("container x: %w", errdefs.ErrFailedPrecondition)))
	for _, err := range []error{refused, errors.New("unmount /run/x: device or resource busy")} {
		if connectionLost(err) {
			t.Errorf("connectionLost(%v) = true", err)
		}
	}
}
