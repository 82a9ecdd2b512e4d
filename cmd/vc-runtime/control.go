package main

import (
	"errors"
	"fmt"
	"path/filepath"

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
