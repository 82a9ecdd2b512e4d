package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/virtcontainers/vc/internal/atomicfile"
	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/pkg/persist"
)

func init() {
	register("state", command{usage: "ID", short: "output the state of a container", run: stateCmd})
}

// Status of a container, as runc names them.
const (
	statusCreating = "creating"
	statusCreated  = "created"
	statusRunning  = "running"
	statusPaused   = "paused"
	statusStopped  = "stopped"
)

// runc's error messages, which tools match.
var (
	errNotExist   = errors.New("container does not exist")
	errNotRunning = errors.New("container not running")
	errNotPaused  = errors.New("container not paused")
)

// Layout of a container's directory under the root:
//
//	<root>/<id>/state.json   this file's containerState
//	<root>/<id>/owner.sock   the owner's control socket
//	<root>/<id>/owner.log    the owner's log (without --log)
//	<root>/<id>/vm/          the VM's sandbox state (pkg/vc, state root <root>/<id>),
//	                         for a container that keeps a VM of its own
const (
	stateFile   = "state.json"
	ownerSocket = "owner.sock"
	ownerLog    = "owner.log"
	// sandboxID is the VM's sandbox id within the container's directory:
	// short, so that the VM's unix sockets fit in sun_path with a
	// 64-character container id (podman's).
	sandboxID = "vm"
)

// containerState is what the runtime keeps of a container.
type containerState struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Status is the owner's last word: creating, created, running,
	// paused, stopped. A gone owner means stopped whatever it says.
	Status string `json:"status"`
	// OwnerPid is the process that keeps the VM (the container's pid).
	OwnerPid   int    `json:"owner_pid,omitempty"`
	OwnerStart uint64 `json:"owner_start,omitempty"`
	// ExitStatus is the container's exit code, or 128+N after signal N;
	// set once stopped.
	ExitStatus int       `json:"exit_status"`
	Exited     time.Time `json:"exited,omitzero"`
	// Owner is the user who created the container.
	Owner string `json:"owner,omitempty"`
	// Sandbox is the container whose owner keeps the VM this container
	// runs in (a pod's infrastructure container); empty when the
	// container's own owner keeps its VM.
	Sandbox string `json:"sandbox,omitempty"`
	// NetNS is the network namespace the container's own VM joined.
	NetNS string `json:"netns,omitempty"`
}

// ociState is runc's state output.
type ociState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// vmStateDirMax is the longest VM state directory (<dir>/vm/vm) whose
// unix sockets fit in sun_path (pkg/hypervisor/qemu refuses longer ones).
const vmStateDirMax = 91

// containerDir is container id's directory: <root>/<id>, unless the VM's
// sockets deep below it would not fit in sun_path (docker's root
// /var/run/docker/runtime-runc/moby and 64-character ids), then
// <root>/<id>.<32 hex digits of the id's SHA-256> with the id cut short
// enough; the state file inside names the id in full.
func containerDir(root, id string) string {
	dir := filepath.Join(root, id)
	const vm = "/" + sandboxID + "/vm"
	if len(dir)+len(vm) <= vmStateDirMax {
		return dir
	}
	sum := sha256.Sum256([]byte(id))
	h := "." + hex.EncodeToString(sum[:16])
	keep := max(vmStateDirMax-len(vm)-len(root)-1-len(h), 0)
	return filepath.Join(root, id[:min(keep, len(id))]+h)
}

// vmOwner is the container whose owner keeps st's VM: st's own, or that
// of the pod container st joined.
func (st *containerState) vmOwner() string {
	if st.Sandbox != "" {
		return st.Sandbox
	}
	return st.ID
}

// vmDir is the state root of st's VM's sandbox (sandboxID within it).
func (st *containerState) vmDir(root string) string { return containerDir(root, st.vmOwner()) }

// validateID refuses ids that are no file name.
func validateID(id string) error {
	if err := persist.ValidateID("container id", id); err != nil {
		return fmt.Errorf("invalid id format: %v", id)
	}
	return nil
}

// loadState reads container id's state; errNotExist if there is none.
func loadState(root, id string) (*containerState, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	st, err := readState(containerDir(root, id))
	if errors.Is(err, errNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if st.ID != id {
		// Another id's shortened directory.
		return nil, errNotExist
	}
	return st, nil
}

// readState reads the state file in a container's directory.
func readState(dir string) (*containerState, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errNotExist
	}
	if err != nil {
		return nil, err
	}
	var st containerState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", stateFile, err)
	}
	return &st, nil
}

// save writes the state atomically.
func (st *containerState) save(root string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(containerDir(root, st.ID), stateFile), b, 0o600)
}

// ownerRunning tells whether the container's owner process is alive.
func (st *containerState) ownerRunning() bool {
	return st.OwnerPid > 0 && proc.Running(st.OwnerPid, st.OwnerStart)
}

// status is the container's status now: what the owner recorded, or
// stopped if the owner is gone.
func (st *containerState) status() string {
	if st.Status == statusStopped {
		return statusStopped
	}
	if st.Status == statusCreating && st.OwnerPid == 0 {
		return statusCreating
	}
	if !st.ownerRunning() {
		return statusStopped
	}
	return st.Status
}

// oci renders the state as runc's state command prints it.
func (st *containerState) oci() ociState {
	s := ociState{
		OCIVersion: specVersion, ID: st.ID, Status: st.status(), Bundle: st.Bundle,
		Rootfs: st.Rootfs, Created: st.Created, Owner: st.Owner, Annotations: st.Annotations,
	}
	if s.Status != statusStopped {
		s.Pid = st.OwnerPid
	}
	return s
}

func stateCmd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("state")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := oneID(fs, "state")
	if err != nil {
		return err
	}
	st, err := loadState(g.root, id)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(st.oci(), "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return nil
}
