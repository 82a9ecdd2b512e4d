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

// handle answers a control request.
func (o *owner) handle(req request) error {
	ctx := context.Background()
	if req.Container != "" && req.Container != o.id {
		return o.memberOp(ctx, req)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	status := o.st.Status
	switch req.Op {
	case "start":
		switch status {
		case statusCreated:
		case statusStopped:
			return errors.New("cannot start a container that has stopped")
		default:
			return errors.New("cannot start an already running container")
		}
		if o.tty != nil {
			o.syncSize(o.tty)
		}
		if err := o.containerOp(ctx, req); err != nil {
			return err
		}
		o.setStatus(statusRunning)
		close(o.started)
		if len(o.poststart) > 0 {
			state := specs.State{Version: specs.Version, ID: o.id, Status: specs.StateRunning, Pid: o.st.OwnerPid, Bundle: o.st.Bundle, Annotations: o.annotations}
			runLateHooks(ctx, o.log, "poststart", o.poststart, state)
		}
		return nil
	case "kill":
		switch status {
		case statusCreated:
			// Nothing runs yet: the container is done.
			o.setStatus(statusStopped)
			o.killed <- req.Signal
			return nil
		case statusRunning, statusPaused:
			return o.containerOp(ctx, req)
		}
		return errNotRunning
	case "pause":
		if status != statusRunning {
			return errNotRunning
		}
		if err := o.containerOp(ctx, req); err != nil {
			return err
		}
		o.setStatus(statusPaused)
		return nil
	case "resume":
		if status != statusPaused {
			return errNotPaused
		}
		if err := o.containerOp(ctx, req); err != nil {
			return err
		}
		o.setStatus(statusRunning)
		return nil
	}
	return fmt.Errorf("unknown request %q", req.Op)
}

// setStatus records a new status; o.mu is held.
func (o *owner) setStatus(s string) {
	o.st.Status = s
	if err := o.st.save(o.g.root); err != nil {
		o.log.Error("save state", "err", err)
	}
}
