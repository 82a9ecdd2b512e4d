package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

// returnMiB is what a container takes and frees in memoryReturn.
const returnMiB = 128

func init() {
	register("memory-return", memoryReturn)
}

// memoryReturn measures what the host gets back of the memory a container
// used: QEMU's RSS idle (the floor), while a container holds 128 MiB of
// anonymous memory and after it was killed; then after a container read a
// 128 MiB file through 9p into the guest's page cache (mapped: 9p has no
// read cache) and exited, and after its removal (the agent drops the clean
// page cache then). The guest's balloon reports what it frees and QEMU
// discards it; without the balloon (the last row) nothing comes back.
func memoryReturn() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	tmp, err := os.MkdirTemp("", "vc-bench-mem-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root, err := rootfs.Busybox(tmp)
	if err != nil {
		return nil, err
	}
	if err := buildStatic("./test/bench/memtouch", filepath.Join(root, "memtouch")); err != nil {
		return nil, err
	}
	big := make([]byte, returnMiB<<20)
	for i := range big {
		big[i] = byte(i>>12) | 1
	}
	if err := os.WriteFile(filepath.Join(root, "big"), big, 0o644); err != nil {
		return nil, err
	}
	big = nil

	r, err := returnFigures(e, root, false)
	if err != nil {
		return nil, err
	}
	off, err := returnFigures(e, root, true)
	if err != nil {
		return nil, err
	}
	return []row{
		{figure: fmt.Sprintf("QEMU RSS after a container held and freed %d MiB anonymous", returnMiB), unit: "MiB", value: r.anonAfter, floor: r.idle, floorName: "the same VM idle before it",
			note: fmt.Sprintf("free page reporting; while held %.0f MiB; back to this %.1f s after the container was killed", r.anonHeld, r.anonTook.Seconds())},
		{figure: fmt.Sprintf("QEMU RSS after a container read a %d MiB file (9p, mapped) and was removed", returnMiB), unit: "MiB", value: r.fileAfter, floor: r.idle2, floorName: "the same VM idle before it",
			note: fmt.Sprintf("after it exited, its pages in the guest's page cache: %.0f MiB; back to this %.1f s after the removal (the agent drops the clean cache)", r.fileHeld, r.fileTook.Seconds())},
		{figure: fmt.Sprintf("the same without the balloon: after %d MiB anonymous / the file", returnMiB), unit: "MiB", value: off.anonAfter, floor: off.idle, floorName: "that VM idle before it",
			note: fmt.Sprintf("while held %.0f MiB; after the file's container was removed: %.0f MiB (idle before it %.0f)", off.anonHeld, off.fileAfter, off.idle2)},
	}, nil
}

type returned struct {
	idle, idle2         float64 // before each workload
	anonHeld, anonAfter float64
	fileHeld, fileAfter float64
	anonTook, fileTook  time.Duration
}

// returnFigures runs both workloads in one sandbox and reads QEMU's RSS
// (MiB) around them.
func returnFigures(e *vmEnv, root string, noBalloon bool) (returned, error) {
	ctx := context.Background()
	var r returned
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: fmt.Sprintf("memret%v", noBalloon), StateRoot: e.stateRoot,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd, NoBalloon: noBalloon}})
	if err != nil {
		return r, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	pid := s.Status().VMPid
	rss := func() float64 {
		kib, _ := rollupKiB(pid, "Rss:")
		return float64(kib) / 1024
	}
	// settle waits until the RSS stays within 2 MiB for 3 s (what the
	// guest frees is reported after about 2 s), at most limit.
	settle := func(limit time.Duration) (float64, time.Duration) {
		t0 := time.Now()
		last, since := rss(), time.Now()
		for time.Since(t0) < limit {
			time.Sleep(250 * time.Millisecond)
			now := rss()
			if now < last-2 || now > last+2 {
				last, since = now, time.Now()
				continue
			}
			if time.Since(since) >= 3*time.Second {
				break
			}
		}
		return last, since.Sub(t0)
	}
	r.idle, _ = settle(30 * time.Second)

	run := func(id string, args ...string) error {
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: id, Rootfs: root, Spec: oci.DefaultSpec(args, nil, "/", false)}); err != nil {
			return err
		}
		s.Container(id).IOStream(ctx, id, vc.IO{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
		return s.Container(id).Start(ctx)
	}
	// Anonymous: dd's 128 MiB buffer, held while dd blocks on a pipe
	// nobody reads.
	if err := run("anon", "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=%dM count=1 | sleep 600", returnMiB)); err != nil {
		return r, err
	}
	for t0 := time.Now(); time.Since(t0) < time.Minute; time.Sleep(250 * time.Millisecond) {
		if r.anonHeld = rss(); r.anonHeld >= r.idle+returnMiB*3/4 {
			break
		}
	}
	r.anonHeld, _ = settle(10 * time.Second)
	if err := s.Container("anon").Kill(ctx, uint32(unix.SIGKILL), true); err != nil {
		return r, err
	}
	if _, err := s.Container("anon").WaitProcess(ctx, "anon"); err != nil {
		return r, err
	}
	r.anonAfter, r.anonTook = settle(time.Minute)
	// Stop records the exit (WaitProcess does not), which Delete needs.
	if err := s.Container("anon").Stop(ctx, 0); err != nil {
		return r, err
	}
	if err := s.Container("anon").Delete(ctx); err != nil {
		return r, err
	}
	r.idle2, _ = settle(30 * time.Second)

	// A file: mapped through 9p, so in the page cache, kept after the
	// container exits; dropped when it is removed.
	if err := run("file", "/memtouch", "/big"); err != nil {
		return r, err
	}
	if _, err := s.Container("file").WaitProcess(ctx, "file"); err != nil {
		return r, err
	}
	r.fileHeld, _ = settle(30 * time.Second)
	// Stop records the exit (WaitProcess does not), which Delete needs.
	if err := s.Container("file").Stop(ctx, 0); err != nil {
		return r, err
	}
	if err := s.Container("file").Delete(ctx); err != nil {
		return r, err
	}
	r.fileAfter, r.fileTook = settle(time.Minute)
	return r, nil
}
