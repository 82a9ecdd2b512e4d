package qemu

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
)

// Templates (hypervisor.Templater, Config.RestoreState).
//
// A template is a VM whose RAM is a memory-backend-file mapped shared
// (Config.MemoryFile, MemoryShared), paused and saved with "migrate" to a
// file after the x-ignore-shared capability is set: the RAM stays in the
// memory file, the state file holds the devices (a few hundred KiB). A VM
// restored from it has the same machine and devices, the memory file
// mapped private (copy-on-write) and "-incoming defer -S"; the driver sets
// x-ignore-shared, runs migrate-incoming from the state file, waits for it
// to complete, and lets the vCPUs run ("cont").
//
// Device backends are not in the state: each VM has its own sockets
// (QMP, agent), console log, shared directories and NAT stack. A 9p
// export must not be mounted in the template's guest (QEMU refuses to
// migrate then: "Migration is disabled when VirtFS export path is
// mounted").

// migrateTimeout bounds a save or a restore when the caller's context
// has no deadline. Only device state moves: it takes well under a second.
var migrateTimeout = 60 * time.Second

// migrationFD is the name under which the state file's descriptor is
// passed to QEMU (getfd) for a save or a restore: the migration reads or
// writes it ("fd:" URI), so QEMU spawns no program and needs no path to
// the file (it may not see the file's directory: confine.go).
const migrationFD = "vc-migration"

// SaveTemplate pauses the VM and writes its device state to path; the RAM
// stays in Config.MemoryFile. The VM stays paused. On error path is
// removed.
func (v *qemuVM) SaveTemplate(ctx context.Context, path string) (err error) {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	v.mu.Lock()
	file, shared := v.cfg.MemoryFile, v.cfg.MemoryShared
	v.mu.Unlock()
	if file == "" || !shared {
		return fmt.Errorf("vm %s: save template: the guest's RAM is not a shared memory file (Config.MemoryFile, MemoryShared): %w", v.id, errdefs.ErrFailedPrecondition)
	}
	q, err := v.running()
	if err != nil {
		return fmt.Errorf("vm %s: save template: %w", v.id, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("vm %s: save template: state file: %w", v.id, err)
	}
	defer f.Close()
	ctx, cancel := withDefaultTimeout(ctx, migrateTimeout)
	defer cancel()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	begin := time.Now()
	if err := saveTemplate(ctx, q, f); err != nil {
		return fmt.Errorf("vm %s: save template to %s: %w%s", v.id, path, err, v.logTails())
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("vm %s: save template: %w", v.id, err)
	}
	if st.Size() == 0 {
		return fmt.Errorf("vm %s: save template: %s is empty: %w", v.id, path, errdefs.ErrDataLoss)
	}
	v.log.Info("template saved", "state", path, "bytes", st.Size(), "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// saveTemplate is SaveTemplate's QMP exchange: stop, x-ignore-shared on,
// the state file passed, migrate to it, wait for "completed".
func saveTemplate(ctx context.Context, q *qmp.Client, f *os.File) error {
	if err := q.Stop(ctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := q.SetMigrationCapability(ctx, "x-ignore-shared", true); err != nil {
		return fmt.Errorf("migrate-set-capabilities x-ignore-shared: %w", err)
	}
	if err := q.GetFD(ctx, migrationFD, f); err != nil {
		return fmt.Errorf("getfd: %w", err)
	}
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": "fd:" + migrationFD}, nil); err != nil {
		q.CloseFD(context.WithoutCancel(ctx), migrationFD)
		return fmt.Errorf("migrate: %w", err)
	}
	return waitMigration(ctx, q, nil, "migrate")
}

// waitMigration polls query-migrate until the migration completed (nil),
// failed, or exited is closed (QEMU gone).
func waitMigration(ctx context.Context, q *qmp.Client, exited <-chan struct{}, what string) error {
	for delay := 2 * time.Millisecond; ; delay = min(2*delay, 10*time.Millisecond) {
		st, err := q.QueryMigrate(ctx)
		if err != nil {
			// QEMU exits when an incoming load fails, closing QMP.
			select {
			case <-exited:
				return fmt.Errorf("%s: qemu exited: the state did not load: %w", what, errdefs.ErrDataLoss)
			case <-time.After(time.Second):
			}
			return fmt.Errorf("%s: query-migrate: %w", what, err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			desc := st.ErrorDesc
			if desc == "" {
				desc = "no reason given"
			}
			return fmt.Errorf("%s %s: %s: %w", what, st.Status, desc, errdefs.ErrDataLoss)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: still %q: %w", what, st.Status, ctx.Err())
		case <-exited:
			// Between two polls: the same failed load as above.
			return fmt.Errorf("%s: qemu exited: the state did not load: %w", what, errdefs.ErrDataLoss)
		case <-time.After(delay):
		}
	}
}

// restoreTemplate is Start's restore of Config.RestoreState: x-ignore-shared
// on, the state file passed, migrate-incoming from it, wait for
// "completed", cont.
func restoreTemplate(ctx context.Context, q *qmp.Client, path string, exited <-chan struct{}) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	ctx, cancel := withDefaultTimeout(ctx, migrateTimeout)
	defer cancel()
	if err := q.SetMigrationCapability(ctx, "x-ignore-shared", true); err != nil {
		return fmt.Errorf("migrate-set-capabilities x-ignore-shared: %w", err)
	}
	if err := q.GetFD(ctx, migrationFD, f); err != nil {
		return fmt.Errorf("getfd: %w", err)
	}
	if err := q.Execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + migrationFD}, nil); err != nil {
		q.CloseFD(context.WithoutCancel(ctx), migrationFD)
		return fmt.Errorf("migrate-incoming: %w", err)
	}
	if err := waitMigration(ctx, q, exited, "restore of "+path); err != nil {
		return err
	}
	if err := q.Cont(ctx); err != nil {
		return fmt.Errorf("cont: %w", err)
	}
	return nil
}

// checkRestoreInputs checks, before QEMU starts, that a restore has its
// files: the memory file of the VM's size and a non-empty state file.
func checkRestoreInputs(memFile string, memMiB uint32, state string) error {
	st, err := os.Stat(memFile)
	if err != nil {
		return fmt.Errorf("template memory file: %w (%w)", err, errdefs.ErrNotFound)
	}
	if want := int64(memMiB) << 20; st.Size() != want {
		return fmt.Errorf("template memory file %s: %d bytes, want %d (%d MiB): %w", memFile, st.Size(), want, memMiB, errdefs.ErrDataLoss)
	}
	st, err = os.Stat(state)
	if err != nil {
		return fmt.Errorf("template state file: %w (%w)", err, errdefs.ErrNotFound)
	}
	if st.Size() == 0 {
		return fmt.Errorf("template state file %s is empty: %w", state, errdefs.ErrDataLoss)
	}
	return nil
}
