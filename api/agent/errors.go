package agent

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// Errors of a container's command that could not run (CreateContainer,
// ExecProcess), as docker tells them apart by exit code. The agent sends
// them as a status of an errdefs class (NotFound, PermissionDenied) with
// an ErrorInfo detail of ErrorDomain naming the reason, so that a client
// tells them apart by type, never by the message: ToGRPC on the agent's
// side, ToNative on the client's. A client that does not know the detail
// (Kata's) sees the class and the message.
var (
	// ErrCommandNotFound: the command does not exist in the container
	// (docker's exit code 127).
	ErrCommandNotFound = errors.New("command not found")
	// ErrCommandNotRunnable: the command exists but cannot be invoked:
	// a directory, a file without execute permission (docker's 126).
	ErrCommandNotRunnable = errors.New("command cannot be invoked")
)

// ErrorDomain is the ErrorInfo domain of the agent's typed errors.
const ErrorDomain = "agent.virtcontainers.io"

// The ErrorInfo reasons of the typed errors, with their status classes.
var typedErrors = []struct {
	reason string
	err    error
	code   codes.Code
	class  error
}{
	{"COMMAND_NOT_FOUND", ErrCommandNotFound, codes.NotFound, errdefs.ErrNotFound},
	{"COMMAND_NOT_RUNNABLE", ErrCommandNotRunnable, codes.PermissionDenied, errdefs.ErrPermissionDenied},
}

// ToGRPC is errgrpc.ToGRPC, but an error that wraps one of the typed
// errors becomes a status of its class carrying its reason.
func ToGRPC(err error) error {
	for _, t := range typedErrors {
		if errors.Is(err, t.err) {
			st := status.New(t.code, err.Error())
			if ds, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: t.reason}); derr == nil {
				st = ds
			}
			return st.Err()
		}
	}
	return errgrpc.ToGRPC(err)
}

// ToNative is errgrpc.ToNative, but a status carrying a reason of
// ErrorDomain comes back as its typed error (errors.Is), of its class
// (errdefs.IsNotFound and the like), with the agent's message.
func ToNative(err error) error {
	st, ok := status.FromError(err)
	if err == nil || !ok {
		return errgrpc.ToNative(err)
	}
	p := st.Proto()
	var rest []*anypb.Any
	var typed *typedError
	for _, d := range p.GetDetails() {
		var info errdetails.ErrorInfo
		if d.UnmarshalTo(&info) == nil && info.GetDomain() == ErrorDomain {
			for _, t := range typedErrors {
				if info.GetReason() == t.reason {
					typed = &typedError{err: t.err, class: t.class}
				}
			}
			continue // an unknown reason: the class and message stay
		}
		rest = append(rest, d)
	}
	if typed == nil {
		return errgrpc.ToNative(err)
	}
	if len(rest) > 0 {
		// The agent sends none beside a reason; keep them if it did.
		p.Details = rest
		return fmt.Errorf("%w: %w", errgrpc.ToNative(status.ErrorProto(p)), typed)
	}
	// The message ends with the typed error's own (the agent's error
	// wrapped it): it is said once.
	msg := strings.TrimSuffix(p.GetMessage(), ": "+typed.err.Error())
	return fmt.Errorf("%s: %w", msg, typed)
}

// typedError is a typed error of its class: errors.Is finds both.
type typedError struct {
	err, class error
}

func (e *typedError) Error() string   { return e.err.Error() }
func (e *typedError) Unwrap() []error { return []error{e.err, e.class} }
