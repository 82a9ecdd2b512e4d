package qemu

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func TestUserNetdevParams(t *testing.T) {
	d := UserNetdev{ID: "netdev-nat0", Net: "10.0.2.0/24", Host: "10.0.2.2", DNS: "10.0.2.3", GuestAddr: "10.0.2.15",
		Forwards: []string{"tcp::8080-10.0.2.15:80", "udp:127.0.0.1:5353-10.0.2.15:53"}}
	want := []string{"-netdev", "user,id=netdev-nat0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.15,ipv6=off," +
		"hostfwd=tcp::8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53"}
	if got := d.QemuParams(); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// A NAT NIC is rendered as a user netdev with its forwards and a virtio-net
// device on pcie.0 (no root port taken).
func TestCommandLineNAT(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:0a")
	cfg := hypervisor.Config{ID: "vm1", StateDir: "/run/vc/vm1", Kernel: "/k", HotplugSlots: -1,
		NAT: &hypervisor.NATNIC{ID: "nat0", MAC: mac, Forwards: []hypervisor.PortForward{
			{HostPort: 8080, GuestPort: 80},
			{Protocol: "udp", HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, GuestPort: 53},
		}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := &launchPlan{cfg: cfg, paths: pathsFor(cfg.StateDir), accel: hypervisor.AccelTCG, transport: hypervisor.TransportVirtioSerial, vhostFD: -1}
	args := p.commandLine()
	for _, want := range []string{
		"user,id=netdev-nat0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,dhcpstart=10.0.2.15,ipv6=off,hostfwd=tcp::8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53",
		"virtio-net-pci,id=net-nat0,netdev=netdev-nat0,mac=02:00:00:00:00:0a",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("command line lacks %q:\n%q", want, args)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return len(a) > 14 && a[:14] == "pcie-root-port" }) {
		t.Errorf("a NAT NIC took a root port: %q", args)
	}
}

// hasUserNetdev reads QEMU's list of netdev backends: a fake QEMU without
// "user" has none; this host's QEMU (Debian's, which the NAT tests need)
// has it.
func TestHasUserNetdev(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "qemu")
	os.WriteFile(fake, []byte("#!/bin/sh\nprintf 'Available netdev backend types:\\nsocket\\ntap\\nuser-ish\\n'\n"), 0o755)
	if hasUserNetdev(fake) {
		t.Errorf("fake qemu without a user backend: reported one")
	}
	p, err := findQEMU("")
	if err != nil {
		t.Skipf("no qemu on this host: %v", err)
	}
	if !hasUserNetdev(p) {
		t.Errorf("%s -netdev help lists no user backend (QEMU built without libslirp?)", p)
	}
}

// A published host port taken when QEMU starts (after pkg/vc's check, or
// by a caller that made none) fails Start with QEMU's reason, leaving no
// process or socket; a free one is bound while the VM runs and released
// when it stops.
func TestRealVMNATForwards(t *testing.T) {
	requireQEMU(t)
	taken, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	mac, _ := net.ParseMAC("02:00:00:00:00:0b")
	lo := netip.MustParseAddr("127.0.0.1")

	cfg := testConfig(t, "natbusy")
	cfg.NAT = &hypervisor.NATNIC{ID: "nat0", MAC: mac, Forwards: []hypervisor.PortForward{{HostAddr: lo, HostPort: taken.Addr().(*net.TCPAddr).Port, GuestPort: 80}}}
	vm, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = vm.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Could not set up host forwarding rule") {
		t.Fatalf("Start with a taken forward port: %v, want QEMU's refusal", err)
	}
	if pids := qemuProcessesIn(cfg.StateDir); len(pids) != 0 {
		t.Errorf("processes left: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, qmpSocketName)); !os.IsNotExist(err) {
		t.Errorf("qmp socket left: %v", err)
	}

	free, _ := net.Listen("tcp4", "127.0.0.1:0")
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	cfg = testConfig(t, "natfree")
	cfg.NAT = &hypervisor.NATNIC{ID: "nat0", MAC: mac, Forwards: []hypervisor.PortForward{{HostAddr: lo, HostPort: port, GuestPort: 80}}}
	if vm, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
		l.Close()
		t.Errorf("forwarded port %d is not bound while the VM runs", port)
	}
	if err := vm.Stop(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Errorf("forwarded port %d still bound after Stop: %v", port, err)
	} else {
		l.Close()
	}
}
