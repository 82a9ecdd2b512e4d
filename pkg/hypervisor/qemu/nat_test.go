package qemu

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/virtcontainers/vc/internal/proc"
	"github.com/virtcontainers/vc/internal/testenv"
	"github.com/virtcontainers/vc/pkg/hypervisor"
)

func TestStreamNetdevParams(t *testing.T) {
	d := streamNetdev{ID: "netdev-nat0", Path: "/run/vc/vm1/passt.sock"}
	want := []string{"-netdev", "stream,id=netdev-nat0,server=off,addr.type=unix,addr.path=/run/vc/vm1/passt.sock"}
	if got := d.QemuParams(); !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// passt gets the NIC's addresses, --no-map-gw (the gateway is not the
// host's loopback) and one port spec per forward. The guest's resolver is
// --dns-forward only, never --dns: given --dns, Debian 12's passt reads no
// /etc/resolv.conf and forwards the guest's queries nowhere (--dns
// 10.0.2.3 made every lookup time out).
func TestPasstArgs(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:0a")
	n := &hypervisor.NATNIC{ID: "nat0", MAC: mac, Forwards: []hypervisor.PortForward{
		{HostPort: 8080, GuestPort: 80},
		{Protocol: "udp", HostAddr: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, GuestPort: 53},
	}}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(passtArgs(n, "/run/vc/vm1/passt.sock", true), " ")
	want := "--foreground --stderr --quiet --one-off --ipv4-only --no-map-gw --socket /run/vc/vm1/passt.sock" +
		" --address 10.0.2.15 --netmask 24 --gateway 10.0.2.2 --dns-forward 10.0.2.3 --runas 0:0" +
		" --tcp-ports 8080:80 --udp-ports 127.0.0.1/5353:53"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := strings.Join(passtArgs(n, "/s", false), " "); strings.Contains(got, "--runas") {
		t.Errorf("not root: got %s, want no --runas", got)
	}
	// Only HostLoopback lets the gateway reach the host's loopback.
	hl := *n
	hl.HostLoopback = true
	if got := strings.Join(passtArgs(&hl, "/s", false), " "); strings.Contains(got, "--no-map-gw") {
		t.Errorf("host loopback: got %s, want no --no-map-gw", got)
	}

	// Resolvers named: still no --dns (passt would forward nowhere);
	// they are passt's /etc/resolv.conf, in order.
	n.Resolvers = []netip.Addr{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("192.0.2.53")}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	got = strings.Join(passtArgs(n, "/s", false), " ")
	if !strings.Contains(got, " --dns-forward 10.0.2.3") || strings.Contains(got, "--dns ") {
		t.Errorf("resolvers: got %s\nwant --dns-forward 10.0.2.3 and no --dns", got)
	}
	rc := string(passtResolvConf(n.Resolvers))
	if !strings.HasSuffix(rc, "\nnameserver 198.18.0.2\nnameserver 192.0.2.53\n") {
		t.Errorf("passt's resolv.conf:\n%s", rc)
	}
}

// A NAT NIC is rendered as a stream netdev to passt's socket in the state
// directory and a virtio-net device on pcie.0 (no root port taken).
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
		"stream,id=netdev-nat0,server=off,addr.type=unix,addr.path=/run/vc/vm1/passt.sock",
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

// hasNetdev reads QEMU's list of netdev backends: a fake QEMU without
// "stream" has none; this host's QEMU (Debian's 7.2, which the NAT tests
// need) has it.
func TestHasNetdev(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "qemu")
	os.WriteFile(fake, []byte("#!/bin/sh\nprintf 'Available netdev backend types:\\nsocket\\ntap\\nstream-ish\\n'\n"), 0o755)
	if hasNetdev(fake, "stream") {
		t.Errorf("fake qemu without a stream backend: reported one")
	}
	p, err := findQEMU("")
	if err != nil {
		testenv.Skipf(t, "no qemu on this host: %v", err)
	}
	if !hasNetdev(p, "stream") {
		t.Errorf("%s -netdev help lists no stream backend (QEMU older than 7.2?)", p)
	}
}

// A published host port taken when the VM starts (after pkg/vc's check,
// or by a caller that made none) fails Start with passt's reason, leaving
// no process (passt or QEMU) or socket; a free one is bound (by passt)
// while the VM runs and released when it stops, and passt ends with QEMU.
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
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = vm.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nat nic nat0: passt exited") || !strings.Contains(err.Error(), "Failed to bind") {
		t.Fatalf("Start with a taken forward port: %v, want passt's refusal naming the nic", err)
	}
	if pids := processesIn(cfg.StateDir); len(pids) != 0 {
		t.Errorf("processes left: %v", pids)
	}
	for _, name := range []string{qmpSocketName, passtSocketName} {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", name, err)
		}
	}

	free, _ := net.Listen("tcp4", "127.0.0.1:0")
	port := free.Addr().(*net.TCPAddr).Port
	free.Close()
	cfg = testConfig(t, "natfree")
	cfg.NAT = &hypervisor.NATNIC{ID: "nat0", MAC: mac, Forwards: []hypervisor.PortForward{{HostAddr: lo, HostPort: port, GuestPort: 80}}}
	if vm, err = newVM(cfg); err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
		l.Close()
		t.Errorf("forwarded port %d is not bound while the VM runs", port)
	}
	if pids := proc.Find(func(args []string) bool {
		return strings.Contains(strings.Join(args, " "), "passt") && slices.Contains(args, "--no-map-gw") && strings.Contains(strings.Join(args, " "), cfg.StateDir)
	}); len(pids) != 1 {
		t.Errorf("passt processes with --no-map-gw while the VM runs: %v, want one", pids)
	}
	if st, err := os.Stat(filepath.Join(cfg.StateDir, passtSocketName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("passt socket: %v, %v; want mode 0600", st, err)
	}
	if err := vm.Stop(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if pids := processesIn(cfg.StateDir); len(pids) != 0 {
		t.Errorf("processes left after Stop: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, passtSocketName)); !os.IsNotExist(err) {
		t.Errorf("passt socket left after Stop: %v", err)
	}
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port)); err != nil {
		t.Errorf("forwarded port %d still bound after Stop: %v", port, err)
	} else {
		l.Close()
	}
}

// processesIn lists QEMU and passt processes whose command line names dir.
func processesIn(dir string) []int {
	return proc.Find(func(args []string) bool {
		line := strings.Join(args, " ")
		return (strings.Contains(line, "qemu") || strings.Contains(line, "passt")) && strings.Contains(line, dir)
	})
}

// Without passt a NAT VM does not start: the error names the NIC and
// passt, and nothing (QEMU, socket) is left.
func TestRealVMNATNoPasst(t *testing.T) {
	requireQEMU(t)
	qemuPath, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:0c")
	cfg := testConfig(t, "natnopasst")
	cfg.HypervisorPath = qemuPath
	cfg.NAT = &hypervisor.NATNIC{ID: "nat0", MAC: mac}
	t.Setenv("PATH", t.TempDir())
	vm, err := newVM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = vm.Start(context.Background())
	if err == nil || !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "nat nic nat0: exec: \"passt\"") {
		t.Fatalf("Start without passt: %v, want a not-found error naming the nic and passt", err)
	}
	if pids := processesIn(cfg.StateDir); len(pids) != 0 {
		t.Errorf("processes left: %v", pids)
	}
	for _, name := range []string{qmpSocketName, passtSocketName} {
		if _, err := os.Stat(filepath.Join(cfg.StateDir, name)); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", name, err)
		}
	}
}
