package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// The owner's control socket takes one JSON request per connection and
// answers one JSON reply: start, kill, pause, resume of the owner's
// container; and, for another container that joined the VM the owner
// keeps (Container: a pod's), create, start, kill, pause, resume and
// remove of that container in the VM (see pod.go).
type request struct {
	Op     string `json:"op"`
	Signal int    `json:"signal,omitempty"`
	All    bool   `json:"all,omitempty"`
	// Container is the container the request is for when it is not the
	// owner's own.
	Container string `json:"container,omitempty"`
}

type reply struct {
	Error string `json:"error,omitempty"`
}

// ownerRequest sends req to container id's owner and returns its error.
func ownerRequest(root, id string, req request) error {
	path := filepath.Join(containerDir(root, id), ownerSocket)
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return fmt.Errorf("container %s: owner process: %w", id, err)
	}
	defer conn.Close()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fmt.Errorf("container %s: owner process: %w", id, err)
	}
	var rep reply
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&rep); err != nil {
		return fmt.Errorf("container %s: owner process: no answer to %s: %w", id, req.Op, err)
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}

// serveControl answers requests on l with handle until l is closed.
func serveControl(l net.Listener, handle func(request) error) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			var req request
			if err := json.NewDecoder(conn).Decode(&req); err != nil {
				return
			}
			var rep reply
			if err := handle(req); err != nil {
				rep.Error = err.Error()
			}
			json.NewEncoder(conn).Encode(rep)
		}()
	}
}
