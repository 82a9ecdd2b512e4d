package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/pkg/guestimage"
	"github.com/virtcontainers/vc/pkg/hypervisor"
	"github.com/virtcontainers/vc/pkg/network"
	"github.com/virtcontainers/vc/pkg/network/nstest"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

const (
	netMiB     = 200   // each TCP transfer
	netRuns    = 3     // best of, for throughput
	udpCount   = 20000 // datagrams a UDP run sends
	udpSize    = 1400  // bytes of payload, under the 1500 MTU
	rrTrips    = 2000  // round trips timed
	rrWarm     = 100   // round trips before the timing
	netPort    = 5201
	guestAddr  = "10.82.0.1"
	peerAddr   = "10.82.0.2"
	serverAddr = guestAddr + ":5201"
)

func init() {
	register("net", netBench)
}

// netFigures is one server's figures: TCP and UDP each way (tx: from the
// server, in the VM, to the peer; rx: the other way), in MiB/s, the
// share of UDP datagrams delivered, and 1-byte round trips.
type netFigures struct {
	tcpTx, tcpRx, udpTx, udpRx float64
	udpTxGot, udpRxGot         float64
	rrP50, rrP99               time.Duration
}

// netBench measures the network path of a sandbox joined to a namespace
// A (the tcfilter model: a tap and tc mirred redirects beside A's veth)
// to a peer in namespace B at the other end of the veth, with the same
// server (test/bench/netperf) at the far end of every case, driven from
// B by the bench:
//
//   - the floor: the server as the /init of a bare guest (no agent, no
//     container) on the same kind of NIC, tap and redirects, the same
//     kernel, QEMU and -smp (a sandbox's room for vCPU hotplug); the
//     container's figures are divided by these.
//   - the bare guest without that room (-smp 1), in the notes: under TCG
//     it is worth a factor of about 1.5-2 on the guest's TCP send.
//   - a container in a VM (the sandbox's, sharing the guest's network
//     namespace, as every container of a sandbox does).
//   - the server in A itself (the host, no VM): what TCG, virtio-net and
//     the tap cost in all, in the notes.
//
// Then the same two VM cases with 2 vCPUs, whose NIC is multiqueue (a
// tap queue per vCPU), and the bare guest with 2 vCPUs and a single
// queue, which is what multiqueue is measured against.
//
// The cases compared run side by side, each in a pair of namespaces of
// its own (the same addresses in each), and are measured in turns,
// netRuns rounds, so that the machine's load (shared, noisy) falls on
// all alike: throughput is the best round, round trips pool every round.
func netBench() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	tmp, err := os.MkdirTemp("", "vc-bench-net-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// One rootfs for every case: busybox plus the static server.
	root, err := rootfs.Busybox(tmp)
	if err != nil {
		return nil, err
	}
	server := filepath.Join(root, "netperf")
	if err := buildStatic("./test/bench/netperf", server); err != nil {
		return nil, err
	}
	floorImg, err := guestimage.BuildFloor(context.Background(), guestimage.Options{
		Root: filepath.Join(e.dataRoot, "images"), KernelFlavor: e.img.KernelFlavor, KernelPackage: genericPackage(e.img),
	}, server)
	if err != nil {
		return nil, fmt.Errorf("bare guest image: %w", err)
	}
	if same, err := sameFile(floorImg.Kernel, e.img.Kernel); err != nil || !same {
		// Not fatal, but the floor would not be the same guest.
		fmt.Fprintf(os.Stderr, "net bench: the bare guest's kernel %s is not the sandbox's %s\n", floorImg.Kernel, e.img.Kernel)
	}
	var pairs []func()
	defer func() {
		for _, del := range pairs {
			del()
		}
	}()
	pair := func() (a, b nstest.NS, err error) {
		a, b, del, err := netPair(len(pairs))
		if err == nil {
			pairs = append(pairs, del)
		}
		return a, b, err
	}

	// The host: the server in A.
	a, b, err := pair()
	if err != nil {
		return nil, err
	}
	srv := exec.Command("ip", "netns", "exec", a.Name, server, "serve", serverAddr)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return nil, err
	}
	host := &netTarget{name: "host", b: b, stop: func() error { return srv.Wait() }}
	if err := measureTurns(host); err != nil {
		return nil, err
	}

	// start starts a case in a pair of its own.
	start := func(name string, f func(a, b nstest.NS) (*netTarget, error)) (*netTarget, error) {
		a, b, err := pair()
		if err != nil {
			return nil, err
		}
		t, err := f(a, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		t.name = name
		return t, nil
	}
	// The floor boots with the sandbox's room for vCPUs (-smp 1,maxcpus=N,
	// N the host's CPUs): TCG runs a guest that may have more than one
	// vCPU in its parallel mode (every atomic a host atomic), which costs
	// the guest's network stack half its speed under TCG (not under KVM),
	// and which the bare guest without that room (-smp 1) shows.
	room := sandboxMaxCPUs(1)
	bare, err := start("bare guest", func(a, b nstest.NS) (*netTarget, error) { return bareGuest(e, a, b, floorImg, 1, room, 1) })
	if err != nil {
		return nil, err
	}
	ctr, err := start("container", func(a, b nstest.NS) (*netTarget, error) { return containerGuest(e, a, b, root, 1, nil) })
	if err != nil {
		bare.stop()
		return nil, err
	}
	one := []*netTarget{bare, ctr}
	var serial *netTarget
	if room > 1 {
		serial, err = start("bare guest, -smp 1", func(a, b nstest.NS) (*netTarget, error) { return bareGuest(e, a, b, floorImg, 1, 1, 1) })
		if err != nil {
			bare.stop()
			ctr.stop()
			return nil, err
		}
		one = append(one, serial)
	}
	// An experiment: VC_BENCH_NET_KERNEL_PARAMS (sets of guest kernel
	// parameters, ";" between sets) adds a case per set: a container in
	// a sandbox booted with them.
	var extra []*netTarget
	var extraParams [][]string
	for _, set := range strings.Split(os.Getenv("VC_BENCH_NET_KERNEL_PARAMS"), ";") {
		params := strings.Fields(set)
		if len(params) == 0 {
			continue
		}
		t, err := start("container, "+strings.Join(params, " "), func(a, b nstest.NS) (*netTarget, error) { return containerGuest(e, a, b, root, 1, params) })
		if err != nil {
			for _, t := range one {
				t.stop()
			}
			return nil, err
		}
		one = append(one, t)
		extra, extraParams = append(extra, t), append(extraParams, params)
	}
	if err := measureTurns(one...); err != nil {
		return nil, err
	}
	bare2q1, err := start("bare guest, 2 vCPUs, 1 queue", func(a, b nstest.NS) (*netTarget, error) { return bareGuest(e, a, b, floorImg, 2, sandboxMaxCPUs(2), 1) })
	if err != nil {
		return nil, err
	}
	bare2, err := start("bare guest, 2 vCPUs, 2 queues", func(a, b nstest.NS) (*netTarget, error) { return bareGuest(e, a, b, floorImg, 2, sandboxMaxCPUs(2), 2) })
	if err != nil {
		bare2q1.stop()
		return nil, err
	}
	ctr2, err := start("container, 2 vCPUs", func(a, b nstest.NS) (*netTarget, error) { return containerGuest(e, a, b, root, 2, nil) })
	if err != nil {
		bare2q1.stop()
		bare2.stop()
		return nil, err
	}
	if err := measureTurns(bare2q1, bare2, ctr2); err != nil {
		return nil, err
	}

	const floorName = "the same from a bare guest process (the server as /init: no agent, no container) on the same NIC, tap and redirects, the same -smp"
	var rows []row
	add := func(what string, v, f netFigures, vcpus string, extra func(v, f netFigures, fig string) string) {
		for _, m := range []struct {
			fig, unit string
			get       func(netFigures) float64
		}{
			{"TCP, VM -> peer", "MiB/s", func(n netFigures) float64 { return n.tcpTx }},
			{"TCP, peer -> VM", "MiB/s", func(n netFigures) float64 { return n.tcpRx }},
			{"UDP, VM -> peer", "MiB/s", func(n netFigures) float64 { return n.udpTx }},
			{"UDP, peer -> VM", "MiB/s", func(n netFigures) float64 { return n.udpRx }},
			{"TCP round trip p50", "µs", func(n netFigures) float64 { return float64(n.rrP50.Nanoseconds()) / 1e3 }},
			{"TCP round trip p99", "µs", func(n netFigures) float64 { return float64(n.rrP99.Nanoseconds()) / 1e3 }},
		} {
			r := row{figure: fmt.Sprintf("%s, %s (%s)", m.fig, what, vcpus), unit: m.unit, value: m.get(v), floor: m.get(f), floorName: floorName}
			if m.unit == "µs" {
				r.note = "lower is better"
			} else {
				r.note = "higher is better"
			}
			if extra != nil {
				r.note += "; " + extra(v, f, m.fig)
			}
			rows = append(rows, r)
		}
	}
	udpNote := func(v, f netFigures, fig string) string {
		switch fig {
		case "UDP, VM -> peer":
			return fmt.Sprintf("%.0f%% of the datagrams delivered (floor %.0f%%)", 100*v.udpTxGot, 100*f.udpTxGot)
		case "UDP, peer -> VM":
			return fmt.Sprintf("%.0f%% delivered (floor %.0f%%); the host sends as fast as it can", 100*v.udpRxGot, 100*f.udpRxGot)
		}
		return ""
	}
	add("container in a VM", ctr.fig, bare.fig, fmt.Sprintf("1 vCPU, room for %d", room), func(v, f netFigures, fig string) string {
		n := join(udpNote(v, f, fig), "the host itself (the server in A, no VM): "+hostFig(host.fig, fig))
		if serial != nil {
			n += "; the bare guest without room for more vCPUs (-smp 1, TCG's serial mode): " + hostFig(serial.fig, fig)
		}
		return n
	})
	for i, t := range extra {
		add("container in a VM, "+strings.Join(extraParams[i], " "), t.fig, bare.fig, "1 vCPU", func(v, f netFigures, fig string) string {
			return "the container without them: " + hostFig(ctr.fig, fig)
		})
	}
	add("container in a VM, multiqueue", ctr2.fig, bare2.fig, "2 vCPUs, 2 queues", func(v, f netFigures, fig string) string {
		return join(udpNote(v, f, fig), "the bare guest with 2 vCPUs and 1 queue: "+hostFig(bare2q1.fig, fig))
	})
	return rows, nil
}

// netPair makes namespaces vcb-aI-PID and vcb-bI-PID joined by a veth
// (veth0 in A with guestAddr, peer0 in B with peerAddr), and returns a
// function that deletes them.
func netPair(i int) (a, b nstest.NS, del func(), err error) {
	a = nstest.NS{Name: fmt.Sprintf("vcb-a%d-%d", i, os.Getpid())}
	b = nstest.NS{Name: fmt.Sprintf("vcb-b%d-%d", i, os.Getpid())}
	var made []string
	del = func() {
		for _, n := range made {
			exec.Command("ip", "netns", "del", n).Run()
		}
	}
	for _, ns := range []*nstest.NS{&a, &b} {
		ns.Path = "/var/run/netns/" + ns.Name
		if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
			del()
			return a, b, nil, fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		made = append(made, ns.Name)
	}
	for _, c := range [][]string{
		{"-n", a.Name, "link", "add", "veth0", "type", "veth", "peer", "name", "peer0", "netns", b.Name},
		{"-n", a.Name, "addr", "add", guestAddr + "/24", "dev", "veth0"},
		{"-n", b.Name, "addr", "add", peerAddr + "/24", "dev", "peer0"},
		{"-n", a.Name, "link", "set", "veth0", "up"},
		{"-n", b.Name, "link", "set", "peer0", "up"},
		{"-n", a.Name, "link", "set", "lo", "up"},
		{"-n", b.Name, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			del()
			return a, b, nil, fmt.Errorf("ip %v: %v: %s", c, err, out)
		}
	}
	return a, b, del, nil
}

// sameFile says whether files a and b have the same bytes.
func sameFile(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func hostFig(n netFigures, fig string) string {
	switch fig {
	case "TCP, VM -> peer":
		return num(n.tcpTx) + " MiB/s"
	case "TCP, peer -> VM":
		return num(n.tcpRx) + " MiB/s"
	case "UDP, VM -> peer":
		return num(n.udpTx) + " MiB/s"
	case "UDP, peer -> VM":
		return num(n.udpRx) + " MiB/s"
	case "TCP round trip p50":
		return num(float64(n.rrP50.Nanoseconds())/1e3) + " µs"
	}
	return num(float64(n.rrP99.Nanoseconds())/1e3) + " µs"
}

// sandboxMaxCPUs is the vCPUs a sandbox of vcpus vCPUs may grow to, by
// default (pkg/vc: the host's CPUs).
func sandboxMaxCPUs(vcpus int) int {
	return max(vcpus, min(runtime.NumCPU(), hypervisor.MaxVCPUs))
}

// hypervisorConfig is a sandbox's VM with vcpus vCPUs and the guest
// kernel parameters params, but for vc.maxcpus=N among them, which sets
// MaxCPUs (an experiment: TCG runs a guest that may have more than one
// vCPU in its parallel mode, atomics and all).
func hypervisorConfig(e *vmEnv, vcpus int, params []string) vc.HypervisorConfig {
	h := vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd, CPUs: uint32(vcpus)}
	for _, p := range params {
		if v, ok := strings.CutPrefix(p, "vc.maxcpus="); ok {
			n, _ := strconv.Atoi(v)
			h.MaxCPUs = uint32(n)
			continue
		}
		h.KernelParams = append(h.KernelParams, p)
	}
	return h
}

// netTarget is a server being measured from its namespace b.
type netTarget struct {
	name  string
	b     nstest.NS
	stop  func() error // after quit: wait for the server, remove what was made
	fig   netFigures
	trips []time.Duration
}

// bareGuest boots the bare guest (the server as /init) with vcpus vCPUs
// joined to A as a sandbox would be (network.SetupQueues, tcfilter, a tap
// of queues queues).
func bareGuest(e *vmEnv, a, b nstest.NS, img *guestimage.Image, vcpus, maxCPUs, queues int) (_ *netTarget, err error) {
	eps, err := network.Discover(a.Path)
	if err != nil {
		return nil, err
	}
	if len(eps) != 1 {
		return nil, fmt.Errorf("namespace A has links %v, want veth0", eps)
	}
	ep := eps[0]
	fs, err := network.SetupQueues(a.Path, &ep, network.TCFilter, "tapnp0", queues)
	if err != nil {
		return nil, err
	}
	release := func() error {
		for _, f := range fs {
			f.Close()
		}
		return network.Teardown(a.Path, ep)
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	nic, err := vcNIC(ep, fs)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("netfloor-%s", a.Name)
	vm, err := hypervisor.New("qemu", hypervisor.Config{
		ID: id, StateDir: filepath.Join(e.stateRoot, id), Kernel: img.Kernel, Initrd: img.Initrd,
		KernelParams: "netperf.addr=" + guestAddr + "/24", CPUs: uint32(vcpus), MaxCPUs: uint32(maxCPUs), NICs: []hypervisor.NIC{nic},
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		return nil, err
	}
	return &netTarget{b: b, stop: func() error {
		select {
		case <-vm.Exited():
		case <-time.After(20 * time.Second):
			// Not a figure: say so, with the console's tail.
			con, _ := os.ReadFile(vm.Info().ConsoleLog)
			fmt.Fprintf(os.Stderr, "net bench: the bare guest %s did not power off after quit; console:\n%s\n", id, con[max(0, len(con)-2000):])
		}
		vm.Stop(context.Background(), 0)
		return release()
	}}, nil
}

func vcNIC(ep network.Endpoint, fs []*os.File) (hypervisor.NIC, error) {
	mac, err := net.ParseMAC(ep.MAC)
	if err != nil {
		return hypervisor.NIC{}, err
	}
	return hypervisor.NIC{ID: "eth0", TapFiles: fs, MAC: mac, MTU: ep.MTU}, nil
}

// containerGuest runs the server in a container of a sandbox with vcpus
// vCPUs joined to A.
func containerGuest(e *vmEnv, a, b nstest.NS, root string, vcpus int, params []string) (_ *netTarget, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id := fmt.Sprintf("net-%s", a.Name)
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: id, StateRoot: e.stateRoot, NetNS: a.Path,
		Hypervisor: hypervisorConfig(e, vcpus, params)})
	if err != nil {
		return nil, err
	}
	remove := func() {
		ctx := context.Background()
		s.Stop(ctx, 5*time.Second)
		s.Delete(ctx)
	}
	defer func() {
		if err != nil {
			remove()
		}
	}()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "srv", Rootfs: root, Spec: oci.DefaultSpec([]string{"/netperf", "serve", serverAddr}, nil, "/", false)}); err != nil {
		return nil, err
	}
	c := s.Container("srv")
	var out bytes.Buffer
	streams := c.IOStream(context.Background(), "srv", vc.IO{Stdout: &out, Stderr: &out})
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return &netTarget{b: b, stop: func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		defer remove()
		code, err := c.Wait(ctx)
		if err != nil || code != 0 {
			c.Kill(ctx, 9, true)
			return fmt.Errorf("the server's container: exit %d, %v: %q", code, err, out.String())
		}
		<-streams
		return c.Delete(ctx)
	}}, nil
}

// measureTurns waits for each target's server to answer, measures them
// in turns, netRuns rounds, then tells every server to quit and stops
// every target, whatever failed.
func measureTurns(ts ...*netTarget) (err error) {
	defer func() {
		for _, t := range ts {
			if c, qerr := t.cmd("quit"); qerr == nil {
				c.Close()
			} else {
				err = errors.Join(err, fmt.Errorf("%s: quit: %w", t.name, qerr))
			}
			err = errors.Join(err, t.stop())
		}
	}()
	for _, t := range ts {
		if err := t.ready(); err != nil {
			return err
		}
	}
	for range netRuns {
		for _, t := range ts {
			if err := t.round(); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
	}
	for _, t := range ts {
		slices.Sort(t.trips)
		t.fig.rrP50, t.fig.rrP99 = t.trips[len(t.trips)/2], t.trips[len(t.trips)*99/100]
	}
	return nil
}

func (t *netTarget) dial() (c net.Conn, err error) {
	err = t.b.Do(func() error {
		c, err = net.DialTimeout("tcp", serverAddr, 5*time.Second)
		return err
	})
	return c, err
}

// cmd connects to the server and sends it a command line.
func (t *netTarget) cmd(line string) (net.Conn, error) {
	c, err := t.dial()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// procstat is the server's procstat reply (VC_BENCH_NET_PROCSTAT=1: a
// diagnosis, where a guest's CPU goes during a transfer).
func (t *netTarget) procstat() string {
	c, err := t.cmd("procstat")
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	return string(b)
}

// ready waits for the server to answer.
func (t *netTarget) ready() error {
	for deadline := time.Now().Add(3 * time.Minute); ; {
		c, err := t.dial()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the server never answered: %w", t.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// round takes one of each figure: throughput kept if the best so far,
// round trips added to the pool.
func (t *netTarget) round() error {
	n := &t.fig
	// VM -> peer: the server writes netMiB.
	var before string
	if os.Getenv("VC_BENCH_NET_PROCSTAT") != "" {
		before = t.procstat()
	}
	c, err := t.cmd(fmt.Sprintf("source %d", netMiB<<20))
	if err != nil {
		return err
	}
	start := time.Now()
	got, err := io.Copy(io.Discard, c)
	d := time.Since(start)
	c.Close()
	if err != nil || got != netMiB<<20 {
		return fmt.Errorf("tcp from the server: %d of %d bytes: %v", got, netMiB<<20, err)
	}
	n.tcpTx = max(n.tcpTx, netMiB/d.Seconds())
	if os.Getenv("VC_BENCH_NET_PROCSTAT") != "" {
		fmt.Fprintf(os.Stderr, "net bench: %s: tcp from the server %.0f MiB/s; guest cpu and tcp between:\n%s\n%s\n", t.name, netMiB/d.Seconds(), before, t.procstat())
	}

	// Peer -> VM: the server reads to EOF and says how much.
	if c, err = t.cmd("sink"); err != nil {
		return err
	}
	start = time.Now()
	buf := make([]byte, 256<<10)
	for left := netMiB << 20; left > 0; {
		w, err := c.Write(buf[:min(left, len(buf))])
		if err != nil {
			c.Close()
			return fmt.Errorf("tcp to the server: %w", err)
		}
		left -= w
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	d = time.Since(start)
	c.Close()
	if strings.TrimSpace(line) != strconv.Itoa(netMiB<<20) {
		return fmt.Errorf("tcp to the server: it read %q of %d bytes: %v", line, netMiB<<20, err)
	}
	n.tcpRx = max(n.tcpRx, netMiB/d.Seconds())

	tx, txGot, err := udpFromServer(t.b, t.cmd)
	if err != nil {
		return err
	}
	if tx > n.udpTx {
		n.udpTx, n.udpTxGot = tx, txGot
	}
	rx, rxGot, err := udpToServer(t.b, t.cmd)
	if err != nil {
		return err
	}
	if rx > n.udpRx {
		n.udpRx, n.udpRxGot = rx, rxGot
	}

	if c, err = t.cmd("echo"); err != nil {
		return err
	}
	defer c.Close()
	one := []byte{'x'}
	for i := range rrWarm + rrTrips/netRuns {
		start := time.Now()
		if _, err := c.Write(one); err != nil {
			return fmt.Errorf("round trip: %w", err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return fmt.Errorf("round trip: %w", err)
		}
		if i >= rrWarm {
			t.trips = append(t.trips, time.Since(start))
		}
	}
	return nil
}

// udpFromServer has the server send udpCount datagrams to a socket in B
// and returns the MiB/s received (first to last datagram) and the share
// delivered.
func udpFromServer(b nstest.NS, cmd func(string) (net.Conn, error)) (float64, float64, error) {
	var uc *net.UDPConn
	if err := b.Do(func() (err error) {
		uc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(peerAddr)})
		return err
	}); err != nil {
		return 0, 0, err
	}
	defer uc.Close()
	uc.SetReadBuffer(4 << 20)
	type res struct {
		bytes       int64
		first, last time.Time
	}
	done := make(chan res, 1)
	go func() {
		var r res
		buf := make([]byte, 65536)
		for {
			// Stop half a second after the last datagram (or 30 s
			// without any).
			wait := 30 * time.Second
			if r.bytes > 0 {
				wait = 500 * time.Millisecond
			}
			uc.SetReadDeadline(time.Now().Add(wait))
			k, _, err := uc.ReadFrom(buf)
			if err != nil {
				done <- r
				return
			}
			now := time.Now()
			if r.bytes == 0 {
				r.first = now
			}
			r.bytes += int64(k)
			r.last = now
		}
	}()
	c, err := cmd(fmt.Sprintf("udpsend %s %d %d", uc.LocalAddr(), udpCount, udpSize))
	if err != nil {
		return 0, 0, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if strings.TrimSpace(line) != "ok" {
		return 0, 0, fmt.Errorf("udpsend: %q %v", line, err)
	}
	r := <-done
	if r.bytes == 0 || !r.last.After(r.first) {
		return 0, 0, errors.New("udp from the server: nothing received")
	}
	return float64(r.bytes) / (1 << 20) / r.last.Sub(r.first).Seconds(), float64(r.bytes) / (udpCount * udpSize), nil
}

// udpToServer sends udpCount datagrams from B to the server and returns
// the MiB/s it received (first to last datagram, by its clock) and the
// share delivered.
func udpToServer(b nstest.NS, cmd func(string) (net.Conn, error)) (float64, float64, error) {
	stat := func() (int64, int64, int64, error) {
		c, err := cmd("udpstat")
		if err != nil {
			return 0, 0, 0, err
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		var n, first, last int64
		if _, serr := fmt.Sscan(line, &n, &first, &last); serr != nil {
			return 0, 0, 0, fmt.Errorf("udpstat: %q: %v", line, errors.Join(err, serr))
		}
		return n, first, last, nil
	}
	if _, _, _, err := stat(); err != nil { // reset
		return 0, 0, err
	}
	var uc net.Conn
	if err := b.Do(func() (err error) { uc, err = net.Dial("udp", serverAddr); return err }); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, udpSize)
	for range udpCount {
		uc.Write(buf) // drops (ENOBUFS) count as not delivered
	}
	uc.Close()
	time.Sleep(time.Second)
	got, first, last, err := stat()
	if err != nil {
		return 0, 0, err
	}
	if got == 0 || last <= first {
		return 0, 0, errors.New("udp to the server: nothing received")
	}
	return float64(got) / (1 << 20) / (float64(last-first) / 1e9), float64(got) / (udpCount * udpSize), nil
}
