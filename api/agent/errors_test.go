package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A command that could not run crosses the wire typed: a status of its
// class with its reason, back to the same error of the same class, the
// message said once, also after a second hop (the owner's agent proxy).
func TestTypedErrorsRoundTrip(t *testing.T) {
	for _, c := range []struct {
		typed error
		code  codes.Code
		class func(error) bool
	}{
		{ErrCommandNotFound, codes.NotFound, errdefs.IsNotFound},
		{ErrCommandNotRunnable, codes.PermissionDenied, errdefs.IsPermissionDenied},
	} {
		guest := fmt.Errorf(`start container init: exec: "x": reason: %w`, c.typed)
		wire := ToGRPC(guest)
		if status.Code(wire) != c.code {
			t.Errorf("%v: status %v, want %v", c.typed, status.Code(wire), c.code)
		}
		// A client that does not know the reason still has the class.
		if plain := status.Convert(wire); plain.Message() != guest.Error() {
			t.Errorf("%v: message %q, want %q", c.typed, plain.Message(), guest.Error())
		}
		native := ToNative(wire)
		for hop := 1; hop <= 2; hop++ {
			if !errors.Is(native, c.typed) || !c.class(native) {
				t.Errorf("%v, hop %d: %v: not the typed error of its class", c.typed, hop, native)
			}
			if native.Error() != guest.Error() {
				t.Errorf("%v, hop %d: message %q, want %q", c.typed, hop, native, guest)
			}
			native = ToNative(ToGRPC(native))
		}
		for _, other := range []error{ErrCommandNotFound, ErrCommandNotRunnable} {
			if other != c.typed && errors.Is(native, other) {
				t.Errorf("%v: also %v", c.typed, other)
			}
		}
	}
}

// Other errors are errgrpc's: a class, no typed error; a status of
// NotFound without a reason is not a command not found.
func TestUntypedErrors(t *testing.T) {
	err := ToNative(ToGRPC(fmt.Errorf("container_id %q: no such container: %w", "c", errdefs.ErrNotFound)))
	if !errdefs.IsNotFound(err) || errors.Is(err, ErrCommandNotFound) || !strings.Contains(err.Error(), "no such container") {
		t.Errorf("not found: %v", err)
	}
	err = ToNative(status.Error(codes.NotFound, `exec: "x": executable file not found in $PATH`))
	if errors.Is(err, ErrCommandNotFound) {
		t.Errorf("typed from the message: %v", err)
	}
	err = ToNative(ToGRPC(errors.New("boom")))
	if !errdefs.IsUnknown(err) || errors.Is(err, ErrCommandNotFound) || errors.Is(err, ErrCommandNotRunnable) {
		t.Errorf("unknown: %v", err)
	}
	if ToNative(nil) != nil || ToGRPC(nil) != nil {
		t.Error("nil is not nil")
	}
}
