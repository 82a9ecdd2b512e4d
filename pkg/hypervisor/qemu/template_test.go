package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"

	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp"
	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp/qmptest"
)

// migrationFake answers the template commands and records their
// arguments; query-migrate reports statuses in turn, the last repeated.
type migrationFake struct {
	mu       sync.Mutex
	args     map[string]string
	statuses []qmp.MigrationStatus
	fds      int // descriptors received with getfd
}

func newMigrationFake(s *qmptest.Server, statuses ...qmp.MigrationStatus) *migrationFake {
	m := &migrationFake{args: map[string]string{}, statuses: statuses}
	ok := func(name string) qmptest.Handler {
		return func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
			m.mu.Lock()
			m.args[name] = string(args)
			m.mu.Unlock()
			s.Reply(id, struct{}{})
		}
	}
	for _, c := range []string{"stop", "cont", "migrate-set-capabilities", "migrate", "migrate-incoming", "closefd"} {
		s.Handle(c, ok(c))
	}
	// getfd must bring a descriptor.
	s.Handle("getfd", func(s *qmptest.Server, id, args json.RawMessage, fds []int) {
		m.mu.Lock()
		m.args["getfd"] = string(args)
		m.fds += len(fds)
		m.mu.Unlock()
		s.Reply(id, struct{}{})
	})
	s.Handle("query-migrate", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		m.mu.Lock()
		st := m.statuses[0]
		if len(m.statuses) > 1 {
			m.statuses = m.statuses[1:]
		}
		m.mu.Unlock()
		s.Reply(id, st)
	})
	return m
}

func (m *migrationFake) arg(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.args[name]
}

func TestSaveTemplateSequence(t *testing.T) {
	s := qmptest.New(t)
	m := newMigrationFake(s, qmp.MigrationStatus{Status: "setup"}, qmp.MigrationStatus{Status: "active"}, qmp.MigrationStatus{Status: "completed"})
	q := dialFake(t, s)
	if err := saveTemplate(context.Background(), q, stateFile(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{"qmp_capabilities", "stop", "migrate-set-capabilities", "getfd", "migrate", "query-migrate", "query-migrate", "query-migrate"}
	if got := s.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	if got := m.arg("migrate-set-capabilities"); got != `{"capabilities":[{"capability":"x-ignore-shared","state":true}]}` {
		t.Errorf("capabilities %s", got)
	}
	if got := m.arg("migrate"); got != `{"uri":"fd:vc-migration"}` {
		t.Errorf("migrate %s", got)
	}
	if got := m.arg("getfd"); got != `{"fdname":"vc-migration"}` || m.fds != 1 {
		t.Errorf("getfd %s with %d descriptors", got, m.fds)
	}
}

// stateFile is an open file for a save.
func stateFile(t *testing.T) *os.File {
	f, err := os.Create(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestSaveTemplateFailed(t *testing.T) {
	s := qmptest.New(t)
	newMigrationFake(s, qmp.MigrationStatus{Status: "failed", ErrorDesc: "Migration is disabled when VirtFS export path '/x' is mounted in the guest using mount_tag 'shared'"})
	q := dialFake(t, s)
	err := saveTemplate(context.Background(), q, stateFile(t))
	if !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "VirtFS") {
		t.Fatalf("got %v", err)
	}
}

func TestRestoreTemplateSequence(t *testing.T) {
	s := qmptest.New(t)
	m := newMigrationFake(s, qmp.MigrationStatus{Status: "active"}, qmp.MigrationStatus{Status: "completed"})
	q := dialFake(t, s)
	if err := restoreTemplate(context.Background(), q, stateFile(t).Name(), nil); err != nil {
		t.Fatal(err)
	}
	want := []string{"qmp_capabilities", "migrate-set-capabilities", "getfd", "migrate-incoming", "query-migrate", "query-migrate", "cont"}
	if got := s.Commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("commands %q, want %q", got, want)
	}
	if got := m.arg("migrate-incoming"); got != `{"uri":"fd:vc-migration"}` {
		t.Errorf("migrate-incoming %s", got)
	}
}

// A restore whose QEMU exits (a truncated state: "load of migration
// failed") ends at once, without cont.
func TestRestoreTemplateQEMUExits(t *testing.T) {
	s := qmptest.New(t)
	newMigrationFake(s, qmp.MigrationStatus{Status: "active"})
	q := dialFake(t, s)
	exited := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { close(exited) })
	err := restoreTemplate(context.Background(), q, stateFile(t).Name(), exited)
	if !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "qemu exited") {
		t.Fatalf("got %v", err)
	}
	for _, c := range s.Commands() {
		if c == "cont" {
			t.Error("cont after a failed restore")
		}
	}
}

func TestCommandLineTemplate(t *testing.T) {
	cfg := unitConfig(t)
	cfg.MemoryFile = "/f/memory"
	cfg.MemoryShared = true
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plan, _, err := vm.prepare()
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(plan.commandLine(), " ")
	for _, want := range []string{
		"-machine q35,sata=off,smbus=off,vmport=off,usb=off,graphics=off,memory-backend=pc.ram",
		"-m 256M -object memory-backend-file,id=pc.ram,size=256M,mem-path=/f/memory,share=on",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("command line lacks %q: %s", want, args)
		}
	}
	if strings.Contains(args, "-incoming") {
		t.Errorf("a template boots: %s", args)
	}
}

func TestRestoreConfig(t *testing.T) {
	dir := t.TempDir()
	mem := filepath.Join(dir, "memory")
	state := filepath.Join(dir, "state")
	cfg := unitConfig(t)
	cfg.MemoryFile, cfg.RestoreState = mem, state
	cfg.MemoryShared = true
	if err := cfg.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "private") {
		t.Errorf("shared restore: %v", err)
	}
	cfg.MemoryShared = false
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Missing, wrong-sized and empty files are refused before QEMU runs.
	if _, _, err := vm.prepare(); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "memory file") {
		t.Errorf("no memory file: %v", err)
	}
	os.WriteFile(mem, []byte("short"), 0o600)
	if _, _, err := vm.prepare(); !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "want 268435456") {
		t.Errorf("short memory file: %v", err)
	}
	os.Truncate(mem, 256<<20)
	if _, _, err := vm.prepare(); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "state file") {
		t.Errorf("no state file: %v", err)
	}
	os.WriteFile(state, nil, 0o600)
	if _, _, err := vm.prepare(); !errors.Is(err, errdefs.ErrDataLoss) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty state file: %v", err)
	}
	os.WriteFile(state, []byte("QEVM"), 0o600)
	plan, _, err := vm.prepare()
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(plan.commandLine(), " ")
	for _, want := range []string{"mem-path=" + mem + ",share=off", "-incoming defer -S"} {
		if !strings.Contains(args, want) {
			t.Errorf("command line lacks %q: %s", want, args)
		}
	}
	// Not a template: SaveTemplate refuses.
	if err := vm.SaveTemplate(context.Background(), filepath.Join(dir, "x")); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("save of a private-memory VM: %v", err)
	}
	var _ hypervisor.Templater = vm
}
