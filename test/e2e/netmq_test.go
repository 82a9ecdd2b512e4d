package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtcontainers/vc/pkg/network/nstest"
	"github.com/virtcontainers/vc/pkg/vc"
)

// tapQueues returns whether tap name in ns is a multiqueue tap, and its
// attached queues.
func tapQueues(t *testing.T, ns nstest.NS, name string) (bool, int) {
	t.Helper()
	l, err := ns.Handle(t).LinkByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	tap, ok := l.(*netlink.Tuntap)
	if !ok {
		t.Fatalf("%s is a %T, not a tap", name, l)
	}
	return tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0, tap.Queues
}

// With 2 vCPUs the sandbox's NIC is multiqueue: its tap has 2 queues (one
// file per queue, held by QEMU), the guest's virtio-net turns both queue
// pairs on (2 rx and 2 tx queues in its sysfs), and traffic flows; a NIC
// hotplugged into the running sandbox gets 2 queues too.
func TestNetworkMultiqueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	a, b, c := nstest.New(t, "mqa"), nstest.New(t, "mqb"), nstest.New(t, "mqc")
	nstest.Veth(t, a, "veth0", []string{"10.79.0.1/24"}, b, "peer0", []string{"10.79.0.2/24"})
	srvB := servePeer(t, b, "hello-from-B")

	const id = "e2e-netmq"
	s, err := vc.CreateSandbox(ctx, vc.SandboxConfig{
		ID: id, StateRoot: stateRoot, NetNS: a.Path,
		Hypervisor: vc.HypervisorConfig{Kernel: kernel, Initrd: initrd, Accel: "tcg", CPUs: 2, MemoryMiB: 256},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s.Stop(context.Background(), 5*time.Second)
		s.Delete(context.Background())
	}()
	if multi, n := tapQueues(t, a, "tap0_vc"); !multi || n != 2 {
		t.Errorf("tap0_vc: multi_queue %v, %d queues attached; want 2 (one per vCPU)", multi, n)
	}
	queues := func(dev string) string {
		out, code := runIn(ctx, t, s, "queues-"+dev, "ls", "/sys/class/net/"+dev+"/queues")
		if code != 0 {
			t.Fatalf("ls %s queues: exit %d: %s", dev, code, out)
		}
		return strings.Join(strings.Fields(out), " ")
	}
	if got := queues("eth0"); got != "rx-0 rx-1 tx-0 tx-1" {
		t.Errorf("guest eth0 queues %q, want both queue pairs on: rx-0 rx-1 tx-0 tx-1", got)
	}
	url := fmt.Sprintf("http://10.79.0.2:%d/", srvB.port)
	out, code := runIn(ctx, t, s, "wget", "timeout", "20", "wget", "-q", "-O", "-", url)
	if code != 0 || !strings.Contains(out, "hello-from-B") || srvB.last() != "10.79.0.1" {
		t.Errorf("wget %s: exit %d, output %q, server saw %q", url, code, out, srvB.last())
	}

	nstest.Veth(t, a, "veth1", []string{"10.80.0.1/24"}, c, "peer1", []string{"10.80.0.2/24"})
	iface, err := s.AddInterface(ctx, "veth1")
	if err != nil {
		t.Fatalf("AddInterface(veth1): %v", err)
	}
	if multi, n := tapQueues(t, a, "tap1_vc"); !multi || n != 2 {
		t.Errorf("hotplugged tap1_vc: multi_queue %v, %d queues; want 2", multi, n)
	}
	if got := queues(iface.Name); got != "rx-0 rx-1 tx-0 tx-1" {
		t.Errorf("hotplugged guest %s queues %q, want rx-0 rx-1 tx-0 tx-1", iface.Name, got)
	}
}
