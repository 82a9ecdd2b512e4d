package hypervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func validConfig() Config {
	return Config{ID: "sb-1", StateDir: "/run/vc/sb-1", Kernel: "/k"}
}

func TestConfigDefaults(t *testing.T) {
	c := validConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.CPUs != 1 || c.MaxCPUs != 1 || c.MemoryMiB != 256 || c.Accel != AccelAuto ||
		c.AgentTransport != TransportAuto || c.HotplugSlots != DefaultHotplugSlots || c.Logger == nil {
		t.Fatalf("defaults not filled in: %+v", c)
	}
	c = validConfig()
	c.HotplugSlots = -5
	c.CPUs, c.MaxCPUs = 2, 4
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HotplugSlots != -1 || c.MaxCPUs != 4 {
		t.Fatalf("got slots %d maxcpus %d", c.HotplugSlots, c.MaxCPUs)
	}
}

func TestConfigInvalid(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	tap := os.Stdin
	cases := map[string]struct {
		mod  func(*Config)
		want string
		is   error
	}{
		"bad id":          {func(c *Config) { c.ID = "a/b" }, `vm id "a/b"`, errdefs.ErrInvalidArgument},
		"empty id":        {func(c *Config) { c.ID = "" }, "vm id", errdefs.ErrInvalidArgument},
		"relative state":  {func(c *Config) { c.StateDir = "run/x" }, "state dir", errdefs.ErrInvalidArgument},
		"no kernel":       {func(c *Config) { c.Kernel = "" }, "no kernel", errdefs.ErrInvalidArgument},
		"maxcpus":         {func(c *Config) { c.CPUs, c.MaxCPUs = 4, 2 }, "max cpus 2 below cpus 4", errdefs.ErrInvalidArgument},
		"memory":          {func(c *Config) { c.MemoryMiB = 100 }, "memory_mib 100: below the minimum of 128 MiB", errdefs.ErrInvalidArgument},
		"accel":           {func(c *Config) { c.Accel = "hvf" }, `accel "hvf"`, errdefs.ErrInvalidArgument},
		"transport":       {func(c *Config) { c.AgentTransport = "tcp" }, `agent transport "tcp"`, errdefs.ErrInvalidArgument},
		"fs tag":          {func(c *Config) { c.SharedFS = []SharedFS{{Tag: "a b", HostPath: "/x"}} }, `tag "a b"`, errdefs.ErrInvalidArgument},
		"fs path":         {func(c *Config) { c.SharedFS = []SharedFS{{Tag: "t", HostPath: "x"}} }, "not absolute", errdefs.ErrInvalidArgument},
		"fs kind":         {func(c *Config) { c.SharedFS = []SharedFS{{Tag: "t", HostPath: "/x", Kind: "nfs"}} }, `kind "nfs"`, errdefs.ErrInvalidArgument},
		"fs dup":          {func(c *Config) { c.SharedFS = []SharedFS{{Tag: "t", HostPath: "/x"}, {Tag: "t", HostPath: "/y"}} }, `two fs devices named "t"`, errdefs.ErrAlreadyExists},
		"disk format":     {func(c *Config) { c.Disks = []Disk{{ID: "d", Path: "/d", Format: "vmdk"}} }, `format "vmdk"`, errdefs.ErrInvalidArgument},
		"disk serial":     {func(c *Config) { c.Disks = []Disk{{ID: "d", Path: "/d", Serial: strings.Repeat("s", 21)}} }, "serial", errdefs.ErrInvalidArgument},
		"disk relative":   {func(c *Config) { c.Disks = []Disk{{ID: "d", Path: "d.img"}} }, "not absolute", errdefs.ErrInvalidArgument},
		"nic no backend":  {func(c *Config) { c.NICs = []NIC{{ID: "n", MAC: mac}} }, "exactly one", errdefs.ErrInvalidArgument},
		"nic both":        {func(c *Config) { c.NICs = []NIC{{ID: "n", MAC: mac, TapName: "tap0", TapFiles: []*os.File{tap}}} }, "exactly one", errdefs.ErrInvalidArgument},
		"nic mac":         {func(c *Config) { c.NICs = []NIC{{ID: "n", TapName: "tap0"}} }, "not a 48-bit", errdefs.ErrInvalidArgument},
		"nic multicast":   {func(c *Config) { c.NICs = []NIC{{ID: "n", TapName: "tap0", MAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}} }, "multicast", errdefs.ErrInvalidArgument},
		"nic tap name":    {func(c *Config) { c.NICs = []NIC{{ID: "n", TapName: "tap-with-a-long-name", MAC: mac}} }, "tap name", errdefs.ErrInvalidArgument},
		"nic mtu":         {func(c *Config) { c.NICs = []NIC{{ID: "n", TapName: "tap0", MAC: mac, MTU: 20}} }, "MTU 20", errdefs.ErrInvalidArgument},
		"nic nil file":    {func(c *Config) { c.NICs = []NIC{{ID: "n", TapFiles: []*os.File{nil}, MAC: mac}} }, "is nil", errdefs.ErrInvalidArgument},
		"disk dup by id":  {func(c *Config) { c.Disks = []Disk{{ID: "d", Path: "/a"}, {ID: "d", Path: "/b"}} }, `two disk devices named "d"`, errdefs.ErrAlreadyExists},
		"too many cpus":   {func(c *Config) { c.CPUs = MaxVCPUs + 1 }, "more than 64 vCPUs", errdefs.ErrInvalidArgument},
		"long id":         {func(c *Config) { c.ID = strings.Repeat("x", 129) }, "vm id", errdefs.ErrInvalidArgument},
		"fs tag too long": {func(c *Config) { c.SharedFS = []SharedFS{{Tag: strings.Repeat("t", 32), HostPath: "/x"}} }, "tag", errdefs.ErrInvalidArgument},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := validConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.is) {
				t.Fatalf("got %v, want it to contain %q and be %v", err, tc.want, tc.is)
			}
		})
	}
}

func TestDeviceDefaults(t *testing.T) {
	d := Disk{ID: "rootfs", Path: "/img"}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Format != "raw" || d.Serial != "rootfs" {
		t.Fatalf("got %+v", d)
	}
	fs := SharedFS{Tag: "shared", HostPath: "/srv"}
	if err := fs.Validate(); err != nil {
		t.Fatal(err)
	}
	if fs.Kind != FS9P {
		t.Fatalf("kind %q", fs.Kind)
	}
}

type fakeHV struct {
	Hypervisor
	cfg Config
}

// fakeDriver makes fakeHVs.
type fakeDriver struct{ name string }

func (d fakeDriver) Name() string                       { return d.name }
func (d fakeDriver) New(cfg Config) (Hypervisor, error) { return &fakeHV{cfg: cfg}, nil }
func (d fakeDriver) Attach(ctx context.Context, dir string) (Hypervisor, error) {
	return nil, errdefs.ErrNotFound
}

func TestRegistry(t *testing.T) {
	if _, err := Lookup("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("lookup of unknown backend: %v", err)
	}
	t.Cleanup(func() { // the registry is global: let -count=N run again
		driversMu.Lock()
		delete(drivers, "fake")
		driversMu.Unlock()
	})
	Register(fakeDriver{name: "fake"})
	h, err := New("fake", Config{ID: "x"})
	if err != nil || h.(*fakeHV).cfg.ID != "x" {
		t.Fatalf("New: %v %v", h, err)
	}
	if _, err := Attach(context.Background(), "fake", "/nowhere"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Attach: %v", err)
	}
	if got := Drivers(); len(got) != 1 || got[0] != "fake" {
		t.Fatalf("Drivers() = %v", got)
	}
	// The fake driver has no optional capability: each is named.
	if _, err := CheckHost("fake", ""); !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "fake: host check") {
		t.Errorf("CheckHost of a driver without it: %v", err)
	}
	if _, err := Templates("fake"); !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "fake: templates") {
		t.Errorf("Templates of a driver without them: %v", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("duplicate Register did not panic")
			}
		}()
		Register(fakeDriver{name: "fake"})
	}()
}

// CheckCPUs and CheckMemoryMiB are the one answer on a VM's size: zero is
// the default, and out-of-range values are errors naming the caller's
// field, never silently changed.
func TestCheckSize(t *testing.T) {
	for _, tc := range []struct {
		cpus, mem         uint64
		wantCPUs, wantMem uint32
		errHas            string
	}{
		{0, 0, DefaultCPUs, DefaultMemoryMiB, ""},
		{4, MinMemoryMiB, 4, MinMemoryMiB, ""},
		{MaxVCPUs + 1, 0, 0, 0, "--cpus 65: more than 64 vCPUs"},
		{1, MinMemoryMiB - 1, 0, 0, "--memory 127: below the minimum of 128 MiB"},
		{1, 2 << 20, 0, 0, "--memory 2097152: more than 1 TiB"},
	} {
		c, cerr := CheckCPUs("--cpus", tc.cpus)
		m, merr := CheckMemoryMiB("--memory", tc.mem)
		err := errors.Join(cerr, merr)
		if tc.errHas == "" {
			if err != nil || c != tc.wantCPUs || m != tc.wantMem {
				t.Errorf("(%d, %d) = (%d, %d, %v), want (%d, %d)", tc.cpus, tc.mem, c, m, err, tc.wantCPUs, tc.wantMem)
			}
			continue
		}
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("(%d, %d): %v, want an invalid argument containing %q", tc.cpus, tc.mem, err, tc.errHas)
		}
	}
}

// pausingHV is a VM that can pause.
type pausingHV struct {
	fakeHV
	paused bool
}

func (h *pausingHV) Pause(context.Context) error  { h.paused = true; return nil }
func (h *pausingHV) Resume(context.Context) error { h.paused = false; return nil }

// The optional capabilities are found by type assertion: a VM without
// one fails naming it, with errdefs.ErrNotImplemented; one with it is
// called.
func TestOptionalCapabilities(t *testing.T) {
	ctx := context.Background()
	var h Hypervisor = &fakeHV{}
	for name, err := range map[string]error{
		"pause":         Pause(ctx, h),
		"resume":        Resume(ctx, h),
		"remove a nic":  RemoveNIC(ctx, h, "n"),
		"remove a disk": RemoveDisk(ctx, h, "d"),
	} {
		if !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "fakeHV") {
			t.Errorf("%s on a VM without it: %v", name, err)
		}
	}
	if _, err := VMState(ctx, h); !errors.Is(err, errdefs.ErrNotImplemented) || !strings.Contains(err.Error(), "state") {
		t.Errorf("state of a VM without it: %v", err)
	}
	p := &pausingHV{}
	if err := Pause(ctx, p); err != nil || !p.paused {
		t.Errorf("Pause: %v, paused %v", err, p.paused)
	}
	if err := Resume(ctx, p); err != nil || p.paused {
		t.Errorf("Resume: %v, paused %v", err, p.paused)
	}
}

// detachingHV is a VM whose handle holds something to release.
type detachingHV struct {
	fakeHV
	closed int
}

func (h *detachingHV) Close() error { h.closed++; return nil }

// Detach closes a Detacher's handle and is a no-op on a VM whose handle
// holds nothing (it is not an error: there is nothing to release).
func TestDetach(t *testing.T) {
	if err := Detach(&fakeHV{}); err != nil {
		t.Errorf("Detach of a VM that is no Detacher: %v", err)
	}
	d := &detachingHV{}
	if err := Detach(d); err != nil || d.closed != 1 {
		t.Errorf("Detach: %v, Close called %d times", err, d.closed)
	}
}

// The core stays small: what only some drivers do is an optional
// interface (issue 17: about eight methods).
func TestCoreSize(t *testing.T) {
	if n := reflect.TypeFor[Hypervisor]().NumMethod(); n > 8 {
		t.Errorf("Hypervisor has %d methods; at most 8 are core, make the rest optional interfaces", n)
	}
}
