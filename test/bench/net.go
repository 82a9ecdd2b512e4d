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

// netBench measures the network path of a sandbox joined to namespace A
// (the tcfilter model: a tap and tc mirred redirects beside A's veth) to
// a peer in namespace B at the other end of the veth, with the same
// server (test/bench/netperf) at the far end of every case, driven from
// B by the bench:
//
//   - the floor: the server as the /init of a bare guest (no agent, no
//     container) on the same NIC, tap and redirects, the same kernel and
//     QEMU; the container's figures are divided by these.
//   - a container in a VM (the sandbox's, sharing the guest's network
//     namespace, as every container of a sandbox does).
//   - the server in A itself (the host, no VM): what TCG, virtio-net and
//     the tap cost in all, printed beside the bare guest.
//
// Then the same two VM cases with 2 vCPUs, whose NIC is multiqueue (a
// tap queue per vCPU), and the bare guest with 2 vCPUs and a single
// queue, which is what multiqueue is measured against.
func netBench() ([]row, error) {
	e, err := newVMEnv()
	if err != nil {
		return nil, err
	}
	defer e.close()
	suffix := fmt.Sprint(os.Getpid())
	a, b := nstest.NS{Name: "vcb-a-" + suffix}, nstest.NS{Name: "vcb-b-" + suffix}
	for _, ns := range []*nstest.NS{&a, &b} {
		ns.Path = "/var/run/netns/" + ns.Name
		if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		defer exec.Command("ip", "netns", "del", ns.Name).Run()
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
			return nil, fmt.Errorf("ip %v: %v: %s", c, err, out)
		}
	}
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
	if floorImg.Kernel != e.img.Kernel {
		// Not fatal, but the floor would not be the same guest.
		fmt.Fprintf(os.Stderr, "net bench: the bare guest's kernel %s is not the sandbox's %s\n", floorImg.Kernel, e.img.Kernel)
	}

	// The host: the server in A.
	srv := exec.Command("ip", "netns", "exec", a.Name, server, "serve", serverAddr)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return nil, err
	}
	host, err := measureNet(b, "host")
	srv.Wait()
	if err != nil {
		return nil, err
	}

	bare, err := bareGuest(e, a, b, floorImg, 1, 1)
	if err != nil {
		return nil, fmt.Errorf("bare guest: %w", err)
	}
	ctr, err := containerGuest(e, a, b, root, 1)
	if err != nil {
		return nil, fmt.Errorf("container: %w", err)
	}
	bare2q1, err := bareGuest(e, a, b, floorImg, 2, 1)
	if err != nil {
		return nil, fmt.Errorf("bare guest, 2 vCPUs, 1 queue: %w", err)
	}
	bare2, err := bareGuest(e, a, b, floorImg, 2, 2)
	if err != nil {
		return nil, fmt.Errorf("bare guest, 2 vCPUs, 2 queues: %w", err)
	}
	ctr2, err := containerGuest(e, a, b, root, 2)
	if err != nil {
		return nil, fmt.Errorf("container, 2 vCPUs: %w", err)
	}

	const floorName = "the same from a bare guest process (the server as /init: no agent, no container) on the same NIC, tap and redirects"
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
	add("container in a VM", ctr, bare, "1 vCPU", func(v, f netFigures, fig string) string {
		return join(udpNote(v, f, fig), "the host itself (the server in A, no VM): "+hostFig(host, fig))
	})
	add("container in a VM, multiqueue", ctr2, bare2, "2 vCPUs, 2 queues", func(v, f netFigures, fig string) string {
		return join(udpNote(v, f, fig), "the bare guest with 2 vCPUs and 1 queue: "+hostFig(bare2q1, fig))
	})
	return rows, nil
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

// bareGuest boots the bare guest (the server as /init) with vcpus vCPUs
// joined to A as a sandbox would be (network.SetupQueues, tcfilter, a tap
// of queues queues), measures it from B and tears it down.
func bareGuest(e *vmEnv, a, b nstest.NS, img *guestimage.Image, vcpus, queues int) (_ netFigures, err error) {
	eps, err := network.Discover(a.Path)
	if err != nil {
		return netFigures{}, err
	}
	if len(eps) != 1 {
		return netFigures{}, fmt.Errorf("namespace A has links %v, want veth0", eps)
	}
	ep := eps[0]
	fs, err := network.SetupQueues(a.Path, &ep, network.TCFilter, "tapnp0", queues)
	if err != nil {
		return netFigures{}, err
	}
	defer func() {
		for _, f := range fs {
			f.Close()
		}
		if terr := network.Teardown(a.Path, ep); terr != nil && err == nil {
			err = terr
		}
	}()
	nic, err := vcNIC(ep, fs)
	if err != nil {
		return netFigures{}, err
	}
	id := fmt.Sprintf("netfloor-%d-%d", vcpus, queues)
	vm, err := hypervisor.New("qemu", hypervisor.Config{
		ID: id, StateDir: filepath.Join(e.stateRoot, id), Kernel: img.Kernel, Initrd: img.Initrd,
		KernelParams: "netperf.addr=" + guestAddr + "/24", CPUs: uint32(vcpus), NICs: []hypervisor.NIC{nic},
	})
	if err != nil {
		return netFigures{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		return netFigures{}, err
	}
	defer vm.Stop(context.Background(), 0)
	n, err := measureNet(b, id)
	if err != nil {
		return n, err
	}
	select {
	case <-vm.Exited():
	case <-time.After(time.Minute):
		return n, fmt.Errorf("the bare guest did not power off after quit")
	}
	return n, nil
}

func vcNIC(ep network.Endpoint, fs []*os.File) (hypervisor.NIC, error) {
	mac, err := net.ParseMAC(ep.MAC)
	if err != nil {
		return hypervisor.NIC{}, err
	}
	return hypervisor.NIC{ID: "eth0", TapFiles: fs, MAC: mac, MTU: ep.MTU}, nil
}

// containerGuest runs the server in a container of a sandbox with vcpus
// vCPUs joined to A, measures it from B and removes the sandbox.
func containerGuest(e *vmEnv, a, b nstest.NS, root string, vcpus int) (netFigures, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id := fmt.Sprintf("net%d", vcpus)
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: id, StateRoot: e.stateRoot, NetNS: a.Path,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd, CPUs: uint32(vcpus)}})
	if err != nil {
		return netFigures{}, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: "srv", Rootfs: root, Spec: oci.DefaultSpec([]string{"/netperf", "serve", serverAddr}, nil, "/", false)}); err != nil {
		return netFigures{}, err
	}
	c := s.Container("srv")
	var out bytes.Buffer
	streams := c.IOStream(ctx, "srv", vc.IO{Stdout: &out, Stderr: &out})
	if err := c.Start(ctx); err != nil {
		return netFigures{}, err
	}
	n, err := measureNet(b, "container")
	if err != nil {
		c.Kill(ctx, 9, true)
	}
	c.Wait(ctx)
	<-streams
	c.Delete(ctx)
	if err != nil {
		return n, fmt.Errorf("%w (server said %q)", err, out.String())
	}
	return n, nil
}

// measureNet waits for the server at serverAddr to answer from B, takes
// every figure, and tells the server to quit.
func measureNet(b nstest.NS, what string) (n netFigures, err error) {
	dial := func() (c net.Conn, err error) {
		err = b.Do(func() error {
			c, err = net.DialTimeout("tcp", serverAddr, 5*time.Second)
			return err
		})
		return c, err
	}
	cmd := func(line string) (net.Conn, error) {
		c, err := dial()
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
	for deadline := time.Now().Add(3 * time.Minute); ; {
		c, err := dial()
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("%s: the server never answered: %w", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer func() {
		if c, qerr := cmd("quit"); qerr == nil {
			c.Close()
		} else if err == nil {
			err = fmt.Errorf("%s: quit: %w", what, qerr)
		}
	}()

	for range netRuns {
		// VM -> peer: the server writes netMiB.
		c, err := cmd(fmt.Sprintf("source %d", netMiB<<20))
		if err != nil {
			return n, err
		}
		start := time.Now()
		got, err := io.Copy(io.Discard, c)
		d := time.Since(start)
		c.Close()
		if err != nil || got != netMiB<<20 {
			return n, fmt.Errorf("%s: tcp from the server: %d of %d bytes: %v", what, got, netMiB<<20, err)
		}
		n.tcpTx = max(n.tcpTx, netMiB/d.Seconds())

		// Peer -> VM: the server reads to EOF and says how much.
		if c, err = cmd("sink"); err != nil {
			return n, err
		}
		start = time.Now()
		buf := make([]byte, 256<<10)
		for left := netMiB << 20; left > 0; {
			w, err := c.Write(buf[:min(left, len(buf))])
			if err != nil {
				c.Close()
				return n, fmt.Errorf("%s: tcp to the server: %w", what, err)
			}
			left -= w
		}
		c.(*net.TCPConn).CloseWrite()
		line, err := bufio.NewReader(c).ReadString('\n')
		d = time.Since(start)
		c.Close()
		if strings.TrimSpace(line) != strconv.Itoa(netMiB<<20) {
			return n, fmt.Errorf("%s: tcp to the server: it read %q of %d bytes: %v", what, line, netMiB<<20, err)
		}
		n.tcpRx = max(n.tcpRx, netMiB/d.Seconds())

		tx, txGot, err := udpFromServer(b, cmd)
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		if tx > n.udpTx {
			n.udpTx, n.udpTxGot = tx, txGot
		}
		rx, rxGot, err := udpToServer(b, cmd)
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		if rx > n.udpRx {
			n.udpRx, n.udpRxGot = rx, rxGot
		}
	}

	c, err := cmd("echo")
	if err != nil {
		return n, err
	}
	defer c.Close()
	trips := make([]time.Duration, 0, rrTrips)
	one := []byte{'x'}
	for i := range rrWarm + rrTrips {
		start := time.Now()
		if _, err := c.Write(one); err != nil {
			return n, fmt.Errorf("%s: round trip: %w", what, err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return n, fmt.Errorf("%s: round trip: %w", what, err)
		}
		if i >= rrWarm {
			trips = append(trips, time.Since(start))
		}
	}
	slices.Sort(trips)
	n.rrP50, n.rrP99 = trips[len(trips)/2], trips[len(trips)*99/100]
	return n, nil
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
