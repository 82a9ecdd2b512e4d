package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/persist"
	"github.com/virtcontainers/vc/pkg/vc"
)

// A container has a name, which keys its sandbox's state directory (vc
// run --name, or the first 12 digits of its id), and an id of 64 hex
// digits as docker's, kept in its run options (runOptions.CID). ps shows
// the id shortened to 12 digits, and every command naming a container
// takes its name, its id or a unique prefix of its id.

// shortIDLen is how much of an id ps and stats show, as docker.
const shortIDLen = 12

// newContainerID returns a random id of 64 hex digits.
func newContainerID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// containerID is the id of the container named name: the one recorded
// when it was run, or, for a container run before ids were recorded (or a
// sandbox vc run did not make), one derived from its name, so that it is
// the same on every call.
func containerID(g *globals, name string) string {
	if o, err := savedOptions(g, name); err == nil && hexID.MatchString(o.CID) && len(o.CID) == 64 {
		return o.CID
	}
	sum := sha256.Sum256([]byte("vc container " + name))
	return hex.EncodeToString(sum[:])
}

var hexID = regexp.MustCompile(`^[0-9a-f]+$`)

// resolveContainer turns what a person typed to name a container into its
// name: a container of that name, or else the one whose id starts with
// ref. A prefix that more than one id starts with is an error naming them.
// A ref matching nothing is returned as it is: the command's own lookup
// reports it missing, as it did before ids.
func resolveContainer(ctx context.Context, g *globals, ref string) (string, error) {
	if persist.ValidateID("container", ref) != nil {
		return ref, nil
	}
	// The name wins over an id prefix (a container named "abc" against
	// an id starting abc...), as docker's exact name does.
	if fi, err := os.Stat(filepath.Join(g.stateRoot, ref)); err == nil && fi.IsDir() {
		return ref, nil
	}
	if !hexID.MatchString(ref) {
		return ref, nil
	}
	list, err := vc.ListSandbox(ctx, g.stateRoot)
	if err != nil {
		return "", err
	}
	var matches []string
	for _, sb := range list {
		if strings.HasPrefix(containerID(g, sb.ID), ref) {
			matches = append(matches, sb.ID)
		}
	}
	switch len(matches) {
	case 0:
		return ref, nil
	case 1:
		return matches[0], nil
	}
	slices.Sort(matches)
	return "", fmt.Errorf("container %q: the id prefix matches several containers (%s): give more of the id, or the name: %w",
		ref, strings.Join(matches, ", "), errdefs.ErrInvalidArgument)
}

// resolveContainers resolves each of refs (resolveContainer).
func resolveContainers(ctx context.Context, g *globals, refs []string) ([]string, error) {
	out := make([]string, len(refs))
	for i, r := range refs {
		n, err := resolveContainer(ctx, g, r)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}
