package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/virtcontainers/vc/internal/rootfs"
	"github.com/virtcontainers/vc/internal/testutil/containerd"
	"github.com/virtcontainers/vc/pkg/network/nstest"
	"github.com/virtcontainers/vc/pkg/oci"
	"github.com/virtcontainers/vc/pkg/vc"
)

const (
	netMiB  = 200
	netRuns = 3
)

func init() {
	register("net", netThroughput)
}

// netThroughput sends netMiB MiB over TCP (the static sender in
// ./sender, 256 KiB writes) from a container in a VM joined to namespace A
// (tap + tc mirred) to a receiver in namespace B, against the same transfer
// from A to B directly (the floor) and from a runc container in A; the
// receiver times from the connection to the last byte. Best of three each.
// (busybox dd | nc was the sender first: it measured busybox's 1 KiB-chunk
// copying, 60 MiB/s even on the host, not the network path.)
func netThroughput() ([]row, error) {
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
		{"-n", a.Name, "addr", "add", "10.82.0.1/24", "dev", "veth0"},
		{"-n", b.Name, "addr", "add", "10.82.0.2/24", "dev", "peer0"},
		{"-n", a.Name, "link", "set", "veth0", "up"},
		{"-n", b.Name, "link", "set", "peer0", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %v: %v: %s", c, err, out)
		}
	}
	var l net.Listener
	if err := b.Do(func() (err error) { l, err = net.Listen("tcp", "10.82.0.2:0"); return err }); err != nil {
		return nil, err
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	// One rootfs for every case: busybox plus the static sender.
	tmp, err := os.MkdirTemp("", "vc-bench-net-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root, err := rootfs.Busybox(tmp)
	if err != nil {
		return nil, err
	}
	if err := buildStatic("./test/bench/sender", filepath.Join(root, "sender")); err != nil {
		return nil, err
	}
	send := []string{"/sender", fmt.Sprintf("10.82.0.2:%d", port), fmt.Sprint(netMiB)}

	// The floor: A to B directly, the same sender.
	var floor float64
	for range netRuns {
		r := receive(l)
		out, err := exec.Command("ip", append([]string{"netns", "exec", a.Name, root + send[0]}, send[1:]...)...).CombinedOutput()
		mbps, rerr := r()
		if rerr != nil {
			return nil, fmt.Errorf("floor: %v (sender: %v %s)", rerr, err, out)
		}
		floor = max(floor, mbps)
	}

	// The third point: the same from a runc container joined to A, before
	// the VM takes A's link over.
	var runc float64
	for i := range netRuns {
		r := receive(l)
		out, err := runcRun(root, a.Path, fmt.Sprintf("vcb-runc-%s-%d", suffix, i), send)
		mbps, rerr := r()
		if rerr != nil {
			return nil, fmt.Errorf("runc: %v (runc: %v %s)", rerr, err, out)
		}
		runc = max(runc, mbps)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{ID: "net", StateRoot: e.stateRoot, NetNS: a.Path,
		Hypervisor: vc.HypervisorConfig{Kernel: e.img.Kernel, Initrd: e.img.Initrd}})
	if err != nil {
		return nil, err
	}
	defer func() { s.Stop(ctx, 5*time.Second); s.Delete(ctx) }()
	var value float64
	for i := range netRuns {
		id := fmt.Sprintf("send%d", i)
		r := receive(l)
		if err := s.CreateContainer(ctx, vc.ContainerConfig{ID: id, Rootfs: root, Spec: oci.DefaultSpec(send, nil, "/", false)}); err != nil {
			return nil, err
		}
		var out bytes.Buffer
		streams := s.Container(id).IOStream(ctx, id, vc.IO{Stdout: &out, Stderr: &out})
		if err := s.Container(id).Start(ctx); err != nil {
			return nil, err
		}
		mbps, rerr := r()
		s.Container(id).Wait(ctx)
		<-streams
		s.Container(id).Delete(ctx)
		if rerr != nil {
			return nil, fmt.Errorf("vm: %v (sender said %q)", rerr, out.String())
		}
		value = max(value, mbps)
	}

	return []row{{
		figure: fmt.Sprintf("TCP throughput, container in a VM -> peer netns (%d MiB)", netMiB), unit: "MiB/s",
		value: value, floor: floor, floorName: "the same between the two namespaces directly",
		note: fmt.Sprintf("higher is better; tcfilter (tap + tc mirred), TCG; VM reaches %.0f%% of the floor", 100*value/floor),
	}, {
		figure: fmt.Sprintf("TCP throughput, runc container -> peer netns (%d MiB)", netMiB), unit: "MiB/s",
		value: runc, floor: floor, floorName: "the same between the two namespaces directly",
		note: "higher is better; the same sender and rootfs, runc joined to the VM's namespace; the VM's figure is " + fmt.Sprintf("%.2f", value/runc) + " of runc's",
	}}, nil
}

// runcRun runs args in a runc container (the runc the test setup builds)
// with root as its rootfs, joined to the network namespace netns, and waits
// for it.
func runcRun(root, netns, id string, args []string) ([]byte, error) {
	bundle, err := os.MkdirTemp("", "vc-bench-runc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bundle)
	spec := oci.DefaultSpec(args, nil, "/", false)
	spec.Root = &specs.Root{Path: root, Readonly: true}
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: netns})
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		return nil, err
	}
	bin := filepath.Join(envOr("VC_TEST_BIN", containerd.DefaultBinDir), "runc")
	cmd := exec.Command(bin, "--root", filepath.Join(bundle, "state"), "run", "--bundle", bundle, id)
	return cmd.CombinedOutput()
}

// receive accepts one connection on l and reads netMiB MiB from it; the
// returned function waits and gives MiB/s from accept to the last byte.
func receive(l net.Listener) func() (float64, error) {
	type result struct {
		mbps float64
		err  error
	}
	c := make(chan result, 1)
	go func() {
		l.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Minute))
		conn, err := l.Accept()
		if err != nil {
			c <- result{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
		start := time.Now()
		n, err := io.CopyN(io.Discard, conn, netMiB<<20)
		d := time.Since(start)
		if err != nil && !errors.Is(err, io.EOF) || n != netMiB<<20 {
			c <- result{err: fmt.Errorf("received %d of %d bytes: %v", n, netMiB<<20, err)}
			return
		}
		c <- result{mbps: float64(n) / (1 << 20) / d.Seconds()}
	}()
	return func() (float64, error) { r := <-c; return r.mbps, r.err }
}
