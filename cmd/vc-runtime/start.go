package main

import (
	"context"
	"errors"
)

func init() {
	register("start", command{usage: "ID", short: "run the process of a created container", run: startCmd})
}

func startCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "start")
	if err != nil {
		return err
	}
	return startContainer(g, id)
}

func startContainer(g *globals, id string) error {
	st, err := loadState(g.root, id)
	if err != nil {
		return err
	}
	switch st.status() {
	case statusCreated:
		return ownerRequest(g.root, id, request{Op: "start"})
	case statusStopped:
		return errors.New("cannot start a container that has stopped")
	case statusCreating:
		return errors.New("cannot start a container that is being created")
	}
	return errors.New("cannot start an already running container")
}
