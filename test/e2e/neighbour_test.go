package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/virtcontainers/vc/pkg/network/nstest"
)

// The permanent neighbours of the sandbox's namespace (ARP and NDP) are
// the guest's too: a container in the VM sees them with their MACs.
func TestNeighboursReachGuest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := nstest.New(t, "nb-a"), nstest.New(t, "nb-b")
	nstest.Veth(t, a, "veth0", []string{"10.86.0.1/24", "fd86::1/64"}, b, "peer0", []string{"10.86.0.2/24", "fd86::2/64"})
	const (
		ip4, mac4 = "10.86.0.9", "02:86:00:00:00:09"
		ip6, mac6 = "fd86::9", "02:86:00:00:00:69"
	)
	for _, n := range [][2]string{{ip4, mac4}, {ip6, mac6}} {
		if out, err := exec.Command("ip", "-n", a.Name, "neigh", "add", n[0], "lladdr", n[1], "dev", "veth0", "nud", "permanent").CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s neigh add %s: %v: %s", a.Name, n[0], err, out)
		}
	}

	const id = "e2e-neigh"
	s := newSandbox(ctx, t, id, a.Path)
	eps := s.Status().Endpoints
	if len(eps) != 1 || len(eps[0].Neighbors) != 2 {
		t.Errorf("endpoints %+v: want veth0 with 2 permanent neighbours", eps)
	}

	out, code := runIn(ctx, t, s, "neigh", "sh", "-c", "cat /proc/net/arp; echo ---; ip -6 neigh show")
	if code != 0 {
		t.Fatalf("neighbour listing: exit %d, output %q", code, out)
	}
	arp, ndp, ok := strings.Cut(out, "---\n")
	if !ok {
		t.Fatalf("neighbour listing: %q", out)
	}
	// /proc/net/arp: IP, HW type, flags (0x6: complete, permanent), MAC,
	// mask, device.
	if !hasNeighLine(arp, ip4+" 0x1 0x6 "+mac4+" * eth0", "") {
		t.Errorf("guest ARP table has no permanent %s at %s on eth0:\n%s", ip4, mac4, arp)
	}
	// busybox ip -6 neigh: "fd86::9 dev eth0 lladdr 02:86:00:00:00:69
	// used 0/0/0 probes 0 PERMANENT".
	if !hasNeighLine(ndp, ip6+" dev eth0 lladdr "+mac6, "PERMANENT") {
		t.Errorf("guest NDP table has no permanent %s at %s on eth0:\n%s", ip6, mac6, ndp)
	}
}

// hasNeighLine reports whether a line of text, its fields joined by single
// spaces, is or starts with prefix and ends with suffix.
func hasNeighLine(text, prefix, suffix string) bool {
	for _, l := range strings.Split(text, "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if suffix == "" && l == prefix || suffix != "" && strings.HasPrefix(l, prefix+" ") && strings.HasSuffix(l, " "+suffix) {
			return true
		}
	}
	return false
}
