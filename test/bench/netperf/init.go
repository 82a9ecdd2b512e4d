package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// initGuest is PID 1 of the bare guest: it mounts /proc, brings lo and the
// first ethernet link up with netperf.addr from the kernel command line
// (the address the sandbox's agent would give the same NIC) and serves.
func initGuest() error {
	os.MkdirAll("/proc", 0o755)
	if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	var addr string
	for _, f := range strings.Fields(string(cmdline)) {
		if v, ok := strings.CutPrefix(f, "netperf.addr="); ok {
			addr = v
		}
	}
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("netperf.addr=%q: %w", addr, err)
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	// The NIC may take a moment to probe.
	var eth netlink.Link
	for deadline := time.Now().Add(30 * time.Second); eth == nil; {
		ls, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range ls {
			if l.Type() == "device" && l.Attrs().Flags&net.FlagLoopback == 0 {
				eth = l
				break
			}
		}
		if eth == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("no ethernet link")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := netlink.AddrAdd(eth, a); err != nil {
		return fmt.Errorf("%s: add %s: %w", eth.Attrs().Name, a, err)
	}
	if err := netlink.LinkSetUp(eth); err != nil {
		return fmt.Errorf("%s up: %w", eth.Attrs().Name, err)
	}
	fmt.Fprintf(os.Stderr, "netperf: %s %s up, serving\n", eth.Attrs().Name, a)
	return serve(net.JoinHostPort(a.IP.String(), "5201"))
}
