package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/pkg/hypervisor"

	"github.com/virtcontainers/vc/pkg/hypervisor/qemu/qmp/qmptest"
)

// fakeMachine is what a fake QEMU holds for the resize commands: the
// places of the topology (id of the vCPU in each, "" free, "boot" for
// -smp's) and the DIMMs and memory backends by id.
type fakeMachine struct {
	mu       sync.Mutex
	cpus     []string
	dimms    map[string]string // device id -> memdev
	backends map[string]bool
	// refuse makes the guest refuse to eject this device (ACPI _OST
	// busy); failAdd makes device_add of this id fail.
	refuse, failAdd string
}

// fakeResizeVM is a started VM on a fake QEMU with fixed vCPUs of max
// and fixed MiB of maxMiB, and the fake's model of the machine.
func fakeResizeVM(t *testing.T, fixed, max, fixedMiB, maxMiB int) (*qemuVM, *fakeMachine, *qmptest.Server) {
	t.Helper()
	m := &fakeMachine{cpus: make([]string, max), dimms: map[string]string{}, backends: map[string]bool{}}
	for i := range fixed {
		m.cpus[i] = "boot"
	}
	s := qmptest.New(t)
	ok := func(s *qmptest.Server, id json.RawMessage) { s.Reply(id, struct{}{}) }
	s.Handle("query-hotpluggable-cpus", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		var out []map[string]any
		for i := len(m.cpus) - 1; i >= 0; i-- { // QEMU lists them backwards
			e := map[string]any{"type": "max-x86_64-cpu", "vcpus-count": 1,
				"props": map[string]int{"socket-id": 0, "core-id": i, "thread-id": 0, "node-id": 0}}
			switch m.cpus[i] {
			case "":
			case "boot":
				e["qom-path"] = fmt.Sprintf("/machine/unattached/device[%d]", i)
			default:
				e["qom-path"] = "/machine/peripheral/" + m.cpus[i]
			}
			out = append(out, e)
		}
		s.Reply(id, out)
	})
	s.Handle("query-memory-devices", func(s *qmptest.Server, id, _ json.RawMessage, _ []int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		var out []map[string]any
		for dev, mem := range m.dimms {
			out = append(out, map[string]any{"type": "dimm", "data": map[string]any{"id": dev, "size": 128 << 20, "memdev": "/objects/" + mem}})
		}
		s.Reply(id, out)
	})
	s.Handle("object-add", func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
		var a struct {
			Type string `json:"qom-type"`
			ID   string `json:"id"`
			Size int    `json:"size"`
		}
		json.Unmarshal(args, &a)
		m.mu.Lock()
		defer m.mu.Unlock()
		if a.Type != "memory-backend-ram" || a.Size != 128<<20 || m.backends[a.ID] {
			s.ReplyError(id, "GenericError", "bad object-add "+string(args))
			return
		}
		m.backends[a.ID] = true
		ok(s, id)
	})
	s.Handle("object-del", func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
		var a struct{ ID string }
		json.Unmarshal(args, &a)
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, mem := range m.dimms {
			if mem == a.ID {
				s.ReplyError(id, "GenericError", "object "+a.ID+" is in use")
				return
			}
		}
		delete(m.backends, a.ID)
		ok(s, id)
	})
	s.Handle("device_add", func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
		var a map[string]any
		json.Unmarshal(args, &a)
		dev, _ := a["id"].(string)
		m.mu.Lock()
		defer m.mu.Unlock()
		if dev == m.failAdd {
			s.ReplyError(id, "GenericError", "no room for "+dev)
			return
		}
		switch a["driver"] {
		case "max-x86_64-cpu":
			core := int(a["core-id"].(float64))
			if m.cpus[core] != "" || dev != fmt.Sprintf("cpu-0-%d-0", core) {
				s.ReplyError(id, "GenericError", "bad cpu "+string(args))
				return
			}
			m.cpus[core] = dev
		case "pc-dimm":
			mem, _ := a["memdev"].(string)
			if !m.backends[mem] {
				s.ReplyError(id, "GenericError", "no memdev "+mem)
				return
			}
			m.dimms[dev] = mem
		default:
			s.ReplyError(id, "GenericError", "unexpected device_add "+string(args))
			return
		}
		ok(s, id)
	})
	s.Handle("device_del", func(s *qmptest.Server, id, args json.RawMessage, _ []int) {
		var a struct{ ID string }
		json.Unmarshal(args, &a)
		m.mu.Lock()
		defer m.mu.Unlock()
		ok(s, id)
		// As Linux answers: in progress, then busy or done.
		s.Event("ACPI_DEVICE_OST", map[string]any{"info": map[string]any{"device": a.ID, "slot": "1", "slot-type": "DIMM", "source": 3, "status": 0x84}})
		if a.ID == m.refuse {
			s.Event("ACPI_DEVICE_OST", map[string]any{"info": map[string]any{"device": a.ID, "slot": "1", "slot-type": "DIMM", "source": 3, "status": 0x82}})
			return
		}
		if i := slices.Index(m.cpus, a.ID); i >= 0 {
			// QEMU 7.2 says DEVICE_DELETED of a vCPU's lapic only.
			m.cpus[i] = ""
			s.Event("DEVICE_DELETED", map[string]any{"path": "/machine/peripheral/" + a.ID + "/lapic"})
			return
		}
		delete(m.dimms, a.ID)
		s.Event("DEVICE_DELETED", map[string]any{"device": a.ID, "path": "/machine/peripheral/" + a.ID})
	})
	q := dialFake(t, s)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &qemuVM{id: "rs", paths: pathsFor(t.TempDir()), log: testLogger(t), started: true, qmp: q, accel: hypervisor.AccelKVM,
		cfg: hypervisor.Config{CPUs: uint32(fixed), FixedCPUs: uint32(fixed), MaxCPUs: uint32(max), MemoryMiB: uint32(fixedMiB), FixedMemoryMiB: uint32(fixedMiB), MaxMemoryMiB: uint32(maxMiB)}}
	v.proc = v.adoptChild(cmd)
	t.Cleanup(func() { v.proc.kill(); v.proc.wait(5 * time.Second) })
	v.startEventLoop(q, v.proc)
	return v, m, s
}

func (m *fakeMachine) state() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var dimms []string
	for d, mem := range m.dimms {
		dimms = append(dimms, d+"/"+mem)
	}
	slices.Sort(dimms)
	var backends []string
	for b := range m.backends {
		backends = append(backends, b)
	}
	slices.Sort(backends)
	return fmt.Sprintf("cpus %q dimms %v backends %v", m.cpus, dimms, backends)
}

func wantSize(t *testing.T, v *qemuVM, cpus, mib uint32) {
	t.Helper()
	got, err := v.Size(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got.CPUs != cpus || got.MemoryMiB != mib {
		t.Fatalf("size %+v, want %d vCPUs, %d MiB", got, cpus, mib)
	}
}

func wantResizeErr(t *testing.T, err, sentinel error, has string) {
	t.Helper()
	if err == nil || (sentinel != nil && !errors.Is(err, sentinel)) || !strings.Contains(err.Error(), has) {
		t.Fatalf("err = %v, want %v naming %q", err, sentinel, has)
	}
}

// vCPUs are plugged into the lowest free places with the type and
// topology QEMU reports, unplugged from the highest, and boot vCPUs are
// never unplugged.
func TestSetCPUs(t *testing.T) {
	v, m, s := fakeResizeVM(t, 1, 4, 256, 256)
	ctx := t.Context()
	if err := v.SetCPUs(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := m.state(); !strings.Contains(got, `cpus ["boot" "cpu-0-1-0" "cpu-0-2-0" ""]`) {
		t.Fatalf("after growing to 3: %s", got)
	}
	wantSize(t, v, 3, 256)
	if v.cfg.CPUs != 3 {
		t.Errorf("recorded cpus %d", v.cfg.CPUs)
	}
	if err := v.SetCPUs(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := m.state(); !strings.Contains(got, `cpus ["boot" "cpu-0-1-0" "" ""]`) {
		t.Fatalf("after shrinking to 2: %s", got)
	}
	wantResizeErr(t, v.SetCPUs(ctx, 5), errdefs.ErrResourceExhausted, "max_cpus 4")
	wantResizeErr(t, v.SetCPUs(ctx, 0), errdefs.ErrResourceExhausted, "booted with")
	if err := v.SetCPUs(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wantSize(t, v, 1, 256)
	// Nothing to do: no device command.
	before := len(s.Commands())
	if err := v.SetCPUs(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Commands()[before:] {
		if c == "device_add" || c == "device_del" {
			t.Fatalf("a resize to the same size ran %s", c)
		}
	}
}

// A vCPU QEMU refuses to add undoes the ones added before it.
func TestSetCPUsUndo(t *testing.T) {
	v, m, _ := fakeResizeVM(t, 1, 4, 256, 256)
	m.failAdd = "cpu-0-3-0"
	wantResizeErr(t, v.SetCPUs(t.Context(), 4), nil, "cpu-0-3-0")
	if got := m.state(); !strings.Contains(got, `cpus ["boot" "" "" ""]`) {
		t.Fatalf("after a failed grow: %s", got)
	}
	// A guest that refuses to eject a vCPU gets back the ones removed.
	m.failAdd = ""
	if err := v.SetCPUs(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	m.refuse = "cpu-0-2-0"
	wantResizeErr(t, v.SetCPUs(t.Context(), 1), errdefs.ErrFailedPrecondition, "refused to eject")
	if got := m.state(); !strings.Contains(got, `cpus ["boot" "cpu-0-1-0" "cpu-0-2-0" "cpu-0-3-0"]`) {
		t.Fatalf("after a refused shrink: %s", got)
	}
}

// Under TCG a vCPU is never unplugged: QEMU 7.2 crashes.
func TestSetCPUsTCGKeeps(t *testing.T) {
	v, m, _ := fakeResizeVM(t, 1, 4, 256, 256)
	v.accel = hypervisor.AccelTCG
	if err := v.SetCPUs(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	wantResizeErr(t, v.SetCPUs(t.Context(), 1), errdefs.ErrNotImplemented, "cannot unplug")
	if got := m.state(); !strings.Contains(got, `cpus ["boot" "cpu-0-1-0" "cpu-0-2-0" ""]`) {
		t.Fatalf("after a refused unplug: %s", got)
	}
}

// Memory comes in 128 MiB DIMMs, each over its own backend, and goes
// newest first; the guest refusing to give one back leaves the VM as it
// was.
func TestSetMemory(t *testing.T) {
	v, m, _ := fakeResizeVM(t, 1, 1, 256, 1024)
	ctx := t.Context()
	if err := v.SetMemory(ctx, 640); err != nil {
		t.Fatal(err)
	}
	if got := m.state(); !strings.Contains(got, "dimms [dimm0/mem-dimm0 dimm1/mem-dimm1 dimm2/mem-dimm2] backends [mem-dimm0 mem-dimm1 mem-dimm2]") {
		t.Fatalf("after growing to 640 MiB: %s", got)
	}
	wantSize(t, v, 1, 640)
	if err := v.SetMemory(ctx, 512); err != nil {
		t.Fatal(err)
	}
	if got := m.state(); !strings.Contains(got, "dimms [dimm0/mem-dimm0 dimm1/mem-dimm1] backends [mem-dimm0 mem-dimm1]") {
		t.Fatalf("after shrinking to 512 MiB: %s", got)
	}
	wantResizeErr(t, v.SetMemory(ctx, 1152), errdefs.ErrResourceExhausted, "max_memory_mib 1024")
	wantResizeErr(t, v.SetMemory(ctx, 128), errdefs.ErrResourceExhausted, "booted with")
	wantResizeErr(t, v.SetMemory(ctx, 300), errdefs.ErrInvalidArgument, "steps of 128 MiB")

	m.refuse = "dimm0"
	err := v.SetMemory(ctx, 256)
	wantResizeErr(t, err, errdefs.ErrFailedPrecondition, "dimm0")
	if !strings.Contains(err.Error(), "refused to eject") {
		t.Errorf("err %v does not say the guest refused", err)
	}
	if got := m.state(); !strings.Contains(got, "dimms [dimm0/mem-dimm0 dimm1/mem-dimm1] backends [mem-dimm0 mem-dimm1]") {
		t.Fatalf("after a refused shrink: %s", got)
	}
	wantSize(t, v, 1, 512)

	// A DIMM QEMU refuses is undone with its backend, and the ones
	// added before it.
	m.refuse, m.failAdd = "", "dimm3"
	wantResizeErr(t, v.SetMemory(ctx, 1024), nil, "dimm3")
	if got := m.state(); !strings.Contains(got, "dimms [dimm0/mem-dimm0 dimm1/mem-dimm1] backends [mem-dimm0 mem-dimm1]") {
		t.Fatalf("after a failed grow: %s", got)
	}
}

// A resize of a VM that is not running says so.
func TestResizeNotRunning(t *testing.T) {
	v := &qemuVM{id: "nr", cfg: hypervisor.Config{FixedCPUs: 1, MaxCPUs: 2}}
	if err := v.SetCPUs(context.Background(), 2); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("err = %v", err)
	}
	if err := v.SetMemory(context.Background(), 512); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("err = %v", err)
	}
}
