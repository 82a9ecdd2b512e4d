package main

// Pods: podman makes a pod's containers share namespaces with its
// infrastructure container by naming that container's process in their
// specs (linux.namespaces[].path = /proc/PID/ns/TYPE). For vc-runtime that
// process is the infrastructure container's owner, which keeps its VM; a
// container naming it runs in that VM instead of booting one:
//
//   - create finds the owner among the containers under --root (vmToJoin)
//     and records the VM's container in the new container's state
//     (containerState.Sandbox);
//   - the new container's owner (a member: it keeps no VM) asks the VM's
//     owner, over its control socket, to create, start, kill, pause,
//     resume and remove its container in the VM (memberOp), and carries
//     the container's streams and waits for it through the VM's agent
//     socket (vc.FetchSandbox). It is the container's pid, as an owner
//     that keeps a VM is, and exits with the container's status;
//   - when the VM's own container stops, its owner stops the VM: the
//     containers still in it are killed (exit status 137).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/vc"
	vcowner "github.com/virtcontainers/vc/pkg/vc/owner"
)

// procNSPath matches a namespace of a process: /proc/PID/ns/TYPE or
// /proc/PID/task/TID/ns/TYPE.
var procNSPath = regexp.MustCompile(`^/proc/([0-9]+)/(?:task/[0-9]+/)?ns/[a-z_]+$`)

// vmToJoin is the container whose VM a container of spec runs in: the one
// (or the VM's container of the one) whose owner process a namespace path
// names, or "" when none does (the container gets a VM of its own). A
// spec naming the processes of two VMs, a stopped container's, or a
// network namespace that is not the VM's is refused, naming the field.
func vmToJoin(root string, spec *specs.Spec) (string, error) {
	if spec.Linux == nil {
		return "", nil
	}
	var owners map[int]*containerState
	host, via := "", -1
	joined := make([]bool, len(spec.Linux.Namespaces))
	for i, ns := range spec.Linux.Namespaces {
		m := procNSPath.FindStringSubmatch(filepath.Clean(ns.Path))
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		if owners == nil {
			owners = runningOwners(root)
		}
		st, ok := owners[pid]
		if !ok {
			continue // not a container of this root: joined as any namespace
		}
		field := fmt.Sprintf("linux.namespaces[%d].path %s", i, ns.Path)
		switch st.status() {
		case statusStopped:
			return "", fmt.Errorf("%s: container %s, whose process it is, has stopped", field, st.ID)
		case statusCreating:
			return "", fmt.Errorf("%s: container %s, whose process it is, is being created", field, st.ID)
		}
		h := st.vmOwner()
		if host != "" && h != host {
			return "", fmt.Errorf("%s is in the VM of container %s, linux.namespaces[%d].path %s in container %s's: a container runs in one VM",
				field, h, via, spec.Linux.Namespaces[via].Path, host)
		}
		host, via, joined[i] = h, i, true
	}
	if host == "" {
		return "", nil
	}
	// A container in a VM has the VM's network: a network namespace of
	// another process or path than the VM's cannot be had as well.
	hostSt, err := loadState(root, host)
	if err != nil {
		return "", fmt.Errorf("linux.namespaces[%d].path %s: container %s: %w", via, spec.Linux.Namespaces[via].Path, host, err)
	}
	for i, ns := range spec.Linux.Namespaces {
		if joined[i] || ns.Type != specs.NetworkNamespace || ns.Path == "" {
			continue
		}
		if hostSt.NetNS != "" && sameFile(ns.Path, hostSt.NetNS) {
			continue
		}
		return "", fmt.Errorf("linux.namespaces[%d].path %s: not the network of container %s's VM, which this container joins (linux.namespaces[%d].path %s): a container in a VM has the VM's network",
			i, ns.Path, host, via, spec.Linux.Namespaces[via].Path)
	}
	return host, nil
}

// runningOwners are the containers under root whose owner process runs,
// by its pid.
func runningOwners(root string) map[int]*containerState {
	out := map[int]*containerState{}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		st, err := loadState(root, e.Name())
		if err != nil || !st.ownerRunning() {
			continue
		}
		out[st.OwnerPid] = st
	}
	return out
}

// sameFile tells whether paths a and b name the same file (a namespace).
func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// memberOp does req for req.Container, a container that joined the VM
// this owner keeps: create, start, kill, pause, resume, remove.
func (o *owner) memberOp(ctx context.Context, req request) error {
	if o.host != "" {
		return fmt.Errorf("container %s keeps no VM: it runs in container %s's", o.id, o.host)
	}
	if err := validateID(req.Container); err != nil {
		return err
	}
	o.vmMu.RLock()
	defer o.vmMu.RUnlock()
	if o.vmDown {
		return fmt.Errorf("container %s's VM has stopped", o.id)
	}
	c := o.sb.Container(req.Container)
	switch req.Op {
	case "create":
		return o.createMember(ctx, req.Container)
	case "remove":
		// Whatever it runs is killed: its own owner is done with it.
		if err := c.Stop(ctx, time.Second); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		o.log.Info("container removed from the VM", "member", req.Container)
		return nil
	}
	return vmOp(ctx, c, req)
}

// createMember creates container id, which joins this owner's VM, from
// its bundle. On error nothing of it is left in the VM.
func (o *owner) createMember(ctx context.Context, id string) error {
	st, err := loadState(o.g.root, id)
	if err != nil {
		return err
	}
	if st.Sandbox != o.id {
		return fmt.Errorf("container %s does not join container %s's VM", id, o.id)
	}
	spec, err := loadSpec(st.Bundle)
	if err != nil {
		return err
	}
	ccfg := vc.ContainerConfig{ID: id, Rootfs: st.Rootfs, Spec: spec, Annotations: map[string]string{"bundle": st.Bundle}}
	if err := ccfg.Validate(); err != nil {
		return err
	}
	if cpus, mib, err := vc.WorkloadFromSpec(spec); err == nil && (cpus > 0 || mib > 0) {
		o.log.Info("a container in a running VM is limited in the guest; the VM keeps its size", "member", id, "cpus", cpus, "memory_mib", mib)
	}
	if err := o.sb.BindEtcFiles(&ccfg); err != nil {
		return err
	}
	if err := o.sb.CreateContainer(ctx, ccfg); err != nil {
		return err
	}
	o.log.Info("container created in the VM", "member", id)
	return nil
}

// vmOp does req to container c of a VM this process reaches.
func vmOp(ctx context.Context, c *vc.Container, req request) error {
	switch req.Op {
	case "start":
		return c.Start(ctx)
	case "kill":
		return c.Kill(ctx, uint32(req.Signal), req.All)
	case "pause":
		return c.Pause(ctx)
	case "resume":
		return c.Resume(ctx)
	}
	return fmt.Errorf("unknown request %q", req.Op)
}

// containerOp does req (start, kill, pause, resume) to this owner's
// container: in the VM it keeps, or through the owner of the VM it
// joined.
func (o *owner) containerOp(ctx context.Context, req request) error {
	if o.host == "" {
		return vmOp(ctx, o.c, req)
	}
	req.Container = o.id
	err := ownerRequest(o.g.root, o.host, req)
	if err != nil && req.Op == "kill" && (errors.Is(err, vcowner.ErrNoOwner) || !o.hostSt.ownerRunning()) {
		// The VM went with its owner, or goes (its control socket is
		// closed before the VM stops: podman pod stop races it), and
		// the container with it: it is dead, as the signal asked (this
		// owner exits 137 as soon as it notices).
		return nil
	}
	return err
}

// joinVM connects a member to the VM of container host: the VM's owner
// creates the container in it; this process reaches the VM's agent for
// the container's streams and exit. On error nothing of it is left.
func (o *owner) joinVM(ctx context.Context, host string) (err error) {
	hostSt, err := loadState(o.g.root, host)
	if err != nil {
		return fmt.Errorf("container %s, whose VM this container joins: %w", host, err)
	}
	if !hostSt.ownerRunning() {
		return fmt.Errorf("container %s, whose VM this container joins, has stopped", host)
	}
	o.host, o.hostSt = host, hostSt
	sb, err := vc.FetchSandbox(ctx, hostSt.vmDir(o.g.root), sandboxID)
	if err != nil {
		return fmt.Errorf("container %s's VM: %w", host, err)
	}
	if err := ownerRequest(o.g.root, host, request{Op: "create", Container: o.id}); err != nil {
		sb.Close()
		return err
	}
	o.sb, o.c = sb, sb.Container(o.id)
	o.log.Info("container created in the VM of container " + host)
	return nil
}

// leaveVM removes a member's container from the VM it joined, unless the
// VM is gone, and drops the connection.
func (o *owner) leaveVM() {
	if vmRunning(o.g.root, o.host) {
		if err := ownerRequest(o.g.root, o.host, request{Op: "remove", Container: o.id}); err != nil {
			o.log.Warn("remove the container from the VM", "vm_container", o.host, "err", err)
		}
	}
	o.sb.Close()
}

// hostGone is closed once the owner of the VM a member joined has exited
// (the VM is gone), or quit is closed.
func (o *owner) hostGone(quit <-chan struct{}) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if !o.hostSt.ownerRunning() {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}

// removeMember asks the owner of the VM container st joined to remove it
// from the VM: what a member's owner that died left there.
func removeMember(root string, st *containerState) error {
	if st.Sandbox == "" || !vmRunning(root, st.Sandbox) {
		return nil // the VM is gone or going, and the container with it
	}
	return ownerRequest(root, st.Sandbox, request{Op: "remove", Container: st.ID})
}

// vmRunning tells whether the VM of container id runs on: its owner
// lives and has not begun to stop it (it records the container stopped
// first).
func vmRunning(root, id string) bool {
	st, err := loadState(root, id)
	return err == nil && st.status() != statusStopped
}
