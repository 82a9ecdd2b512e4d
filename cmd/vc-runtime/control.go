package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

// The owner's control socket speaks pkg/vc/owner's protocol: start,
// kill, pause, resume of the owner's container; and, for another
// container that joined the VM the owner keeps (Container: a pod's),
// create, start, kill, pause, resume and remove of that container in the
// VM (see pod.go).
type request = vcowner.Request

// ownerRequest sends req to container id's owner and returns its error.
func ownerRequest(root, id string, req request) error {
	_, err := vcowner.Call(filepath.Join(containerDir(root, id), ownerSocket), req)
	if errors.Is(err, vcowner.ErrNoOwner) {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return err
}

// handleMember answers a request for another container, one that joined
// the VM this owner keeps (a pod's).
func (o *owner) handleMember(ctx context.Context, req request) (*vcowner.State, error) {
	if req.Container == "" || req.Container == o.id {
		return nil, fmt.Errorf("unknown request %q", req.Op)
	}
	return nil, o.memberOp(ctx, req)
}

// saveState records the container's new status (and exit) in its state
// file; the owner's lock is held.
func (o *owner) saveState(s vcowner.State) {
	o.st.Status = s.Status
	if !s.Exited.IsZero() {
		o.st.ExitStatus, o.st.Exited = s.ExitStatus, s.Exited
	}
	if err := o.st.save(o.g.root); err != nil {
		o.log.Error("save state", "err", err)
	}
}

// poststartHooks runs the spec's poststart hooks once the container
// started.
func (o *owner) poststartHooks(ctx context.Context) {
	if len(o.poststart) > 0 {
		state := specs.State{Version: specs.Version, ID: o.id, Status: specs.StateRunning, Pid: o.st.OwnerPid, Bundle: o.st.Bundle, Annotations: o.annotations}
		runLateHooks(ctx, o.log, "poststart", o.poststart, state)
	}
}

// containerOps are the owner's container's start, kill, pause and
// resume: in the VM it keeps, or through the owner of the VM it joined.
type containerOps struct{ o *owner }

func (c containerOps) Start(ctx context.Context) error {
	return c.o.containerOp(ctx, request{Op: vcowner.OpStart})
}

func (c containerOps) Kill(ctx context.Context, sig uint32, all bool) error {
	return c.o.containerOp(ctx, request{Op: vcowner.OpKill, Signal: int(sig), All: all})
}

func (c containerOps) Pause(ctx context.Context) error {
	return c.o.containerOp(ctx, request{Op: vcowner.OpPause})
}

func (c containerOps) Resume(ctx context.Context) error {
	return c.o.containerOp(ctx, request{Op: vcowner.OpResume})
}
